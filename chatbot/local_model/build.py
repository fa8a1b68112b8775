"""Build llama.cpp's server once per machine, with flags that are safe on every x86-64 CPU.

`python chatbot/local_model/build.py` (standard library only, so it can run while pip installs the rest) puts
`llama-server` in the virtualenv's bin folder. The source is
the llama.cpp that the llama-cpp-python release on PyPI vendors (pinned and checked by its SHA-256).
A native build (`-march=native`) turns on AMX on Intel Xeons, where llama.cpp's worker threads die with a
general protection fault on the first answer under many hypervisors; so the build never asks the compiler
for the machine's own instruction set: AVX2 (with FMA, F16C, BMI2) where the CPU has it, plain x86-64
otherwise, never AVX-512 or AMX. Builds are kept in ~/.cache/chatbot/llama-server under a name made from
the source and the flags, so a build made with other flags (or by pip, natively) is never taken.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SOURCE = "llama-cpp-python==0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDORED = "vendor/llama.cpp/"
OFF: tuple[str, ...] = ("GGML_NATIVE", "GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16")
OFF += ("GGML_AVX_VNNI", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
AVX2 = ("GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2")
AVX2_NEEDS = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}  # /proc/cpuinfo's names for them
SERVER_ONLY = {
    "CMAKE_BUILD_TYPE": "Release",
    "BUILD_SHARED_LIBS": "OFF",  # one self-contained binary: no libggml-cpu.so found elsewhere at run time
    "LLAMA_BUILD_SERVER": "ON",
    "LLAMA_BUILD_TOOLS": "ON",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
    "LLAMA_BUILD_APP": "OFF",
    "LLAMA_BUILD_UI": "OFF",
    "LLAMA_USE_PREBUILT_UI": "OFF",  # its web UI would be downloaded; the chat does not use it
    "LLAMA_OPENSSL": "OFF",
}


def cpu_flags() -> set[str]:
    """The instruction sets this CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def build_flags(cpu: set[str]) -> dict[str, str]:
    """CMake flags for a CPU with these instruction sets: AVX2 when it has every part of it, never AMX."""
    on = AVX2 if AVX2_NEEDS <= cpu else ()
    baseline = {name: "OFF" for name in AVX2}
    return {**SERVER_ONLY, **baseline, **{name: "ON" for name in on}, **{name: "OFF" for name in OFF}}


def cache_folder(flags: dict[str, str]) -> Path:
    """Where a build with these flags is kept: its name changes with the source or any flag."""
    digest = hashlib.sha256(repr((SOURCE, sorted(flags.items()))).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "chatbot" / "llama-server" / f"{SOURCE.replace('==', '-')}-{digest}"


def runs(binary: Path) -> bool:
    """Whether the binary starts on this machine (a build copied from elsewhere may not)."""
    try:
        return subprocess.run([binary, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def download_source(folder: Path) -> Path:
    """The pinned source archive from PyPI, checked against its SHA-256."""
    # Only this package from source: `:all:` would also build its build requirements from source (minutes).
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        "llama-cpp-python",
        "--no-cache-dir",
    ]
    subprocess.run([*command, "--disable-pip-version-check", "-q", "-d", str(folder), SOURCE], check=True)
    archive = next(folder.glob("*.tar.gz"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{archive.name} has SHA-256 {digest}, not the pinned {SOURCE_SHA256}: not building it.")
    return archive


def extract_llama_cpp(archive: Path, folder: Path) -> Path:
    """Only llama.cpp's own tree from the archive."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if VENDORED in m.name]
        tar.extractall(folder, members=members, filter="data")
    return next(folder.glob(f"*/{VENDORED}")).resolve()


def compile_server(source: Path, flags: dict[str, str], into: Path) -> Path:
    build = source / "build"
    defines = [f"-D{name}={value}" for name, value in flags.items()]
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-Wno-dev", *defines], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True)
    into.mkdir(parents=True, exist_ok=True)
    built = into / "llama-server.partial"
    shutil.copy2(build / "bin" / "llama-server", built)
    (into / "flags.txt").write_text("\n".join(f"{k}={v}" for k, v in flags.items()) + "\n")
    return built.rename(into / "llama-server")  # whole or not there: a build cut short is never taken


def install(target: Path) -> Path:
    """Put a safe llama-server at `target`: the kept build for this machine's flags, else a new one."""
    flags = build_flags(cpu_flags())
    kept = cache_folder(flags) / "llama-server"
    if not runs(kept):
        print(f"Building llama.cpp's server ({SOURCE}, no AVX-512, no AMX); about 5 minutes on two cores...")
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            source = extract_llama_cpp(download_source(work), work)
            compile_server(source, flags, kept.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(kept, target)
    return target


if __name__ == "__main__":
    print(f"llama-server: {install(Path(sys.prefix) / 'bin' / 'llama-server')}")
