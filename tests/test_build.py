"""llama.cpp's server is built with flags that are safe on every x86-64 CPU, and a build is never mixed up."""

from chatbot.local_model.build import AVX2_NEEDS, build_flags, cache_folder

XEON_WITH_AMX = AVX2_NEEDS | {"avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}


def test_a_xeon_with_amx_gets_avx2_and_neither_avx512_nor_amx():
    flags = build_flags(XEON_WITH_AMX)
    assert flags["GGML_NATIVE"] == "OFF"  # never the compiler's -march=native
    assert all(flags[name] == "ON" for name in ("GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"))
    assert all(value == "OFF" for name, value in flags.items() if "AVX512" in name or "AMX" in name)


def test_a_cpu_without_avx2_gets_the_plain_x86_64_baseline():
    flags = build_flags({"sse4_2", "avx"})
    assert all(flags[name] == "OFF" for name in ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_NATIVE"))


def test_builds_with_other_flags_are_kept_apart():
    assert cache_folder(build_flags(XEON_WITH_AMX)) != cache_folder(build_flags(set()))
    assert cache_folder(build_flags(XEON_WITH_AMX)) == cache_folder(build_flags(XEON_WITH_AMX | {"sse2"}))
