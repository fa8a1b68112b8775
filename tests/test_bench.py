"""The benchmark scripts still run and their backend still speaks what the app reads (figures: bench/RESULTS.md)."""

import json
import os
import signal
import subprocess
import sys
from subprocess import PIPE

from tests.servers import ROOT


def run(*arguments: str) -> str:
    """Run a bench script; on failure or a hang, show what it printed (a hung one is killed with its servers)."""
    process = subprocess.Popen(
        [sys.executable, *arguments], cwd=ROOT, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True
    )
    try:
        printed, complaints = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        printed, complaints = process.communicate()
        raise AssertionError(f"{arguments} hung; it printed: {printed!r} {complaints[-2000:]!r}") from None
    finally:
        if process.poll() is None:  # this test was interrupted: leave nothing running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, complaints[-2000:]
    return printed


def test_the_concurrency_benchmark_delivers_every_token(tmp_path):
    results = tmp_path / "results.jsonl"
    run(
        "bench/concurrency.py",
        "--streams",
        "5",
        "--tokens",
        "30",
        "--rate",
        "0",
        "--ramp",
        "0.5",
        "--results",
        str(results),
    )
    run("bench/concurrency.py", "--idle", "5", "--results", str(results))
    streaming, idle = (json.loads(line) for line in results.read_text().splitlines())
    assert streaming["held"] == 5 and streaming["tokens_delivered"] == 150, streaming
    assert 0 <= streaming["delay_p50_ms"] <= streaming["delay_p99_ms"] < 5000
    assert idle["idle_sockets"] == 5 and idle["held"] == 5 and idle["rss_after_kib"] > 0
    assert idle["healthz_ms_p50_p99"][0] <= idle["healthz_ms_p50_p99"][1] < 10_000


def test_the_relay_benchmark_compares_the_app_with_the_backend_alone():
    printed = run("bench/relay.py", "--tokens", "50", "--runs", "2")
    assert "relay ratio" in printed and "extra time to first token" in printed and "app CPU per token" in printed


def test_the_relay_benchmark_reuses_one_conversation_and_prints_each_answers_first_token():
    printed = run("bench/relay.py", "--tokens", "50", "--reuse", "3", "--worker-class", "gevent")
    rows = [line.split() for line in printed.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "3"] and all(float(row[1]) > 0 for row in rows), printed


def test_the_built_in_model_benchmark_compares_the_app_with_llama_cpp_alone():
    printed = run("bench/local_model.py", "--tokens", "20", "--runs", "2")
    assert "llama.cpp alone" in printed and "through the app" in printed and "ratio (app / alone" in printed


def test_the_live_markdown_benchmark_compares_a_short_and_a_long_answer():
    printed = run("bench/live_markdown.py", "--tokens", "200", "2000")
    assert "µs/token" in printed and "ratio (2,000 / 200 tokens, mixed)" in printed


def test_the_answer_parts_benchmark_compares_a_short_and_a_long_answer():
    printed = run("bench/answer_parts.py", "--stores", "memory")
    assert "| memory | " in printed and "ratio" in printed


def test_the_tool_round_benchmark_times_what_the_app_adds_around_a_call():
    printed = run("bench/tool_round.py", "--runs", "2", "--tokens", "50", "--long-runs", "1")
    lines = ("finish -> call", "the call itself", "result -> request", "first request, with the tool server")
    for line in (*lines, "CPU per token, with the tool server", "CPU per token, without"):
        assert line in printed, printed
