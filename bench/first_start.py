"""The first five minutes of a new user: `make run` on a fresh clone until the first answer in a browser.

Run: .venv/bin/python bench/first_start.py [--keep-cache]
Clones this repository's HEAD into a temporary folder and runs `make run` there as a new user would, with an
empty pip cache and (unless --keep-cache) an empty ~/.cache, so llama.cpp's server is built from scratch.
Times: until the page answers, until Chromium (Debian's) shows the first whole answer of the built-in model;
then Ctrl-C, and a second `make run` until the page answers. Needs port 8000 free.

Or: .venv/bin/python bench/first_start.py --starts CHECKOUT [CHECKOUT ...] [--rounds 5]
The start of checkouts that are installed already (a cold start: a new process, nothing warm but the disk),
taken in turns so that the same noise hits each: what `make run` runs once installed (its make step left out,
so that checkouts may share one venv), until the page answers, then Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHAT = "http://127.0.0.1:8000"


MAKE_RUN = ("make", "run")
SERVE = (".venv/bin/flask", "--app", "wsgi", "serve")  # what `make run` runs once installed


def start(
    checkout: Path, environment: dict[str, str], log: Path, command: tuple[str, ...] = MAKE_RUN
) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            command, cwd=checkout, env=environment, stdout=output, stderr=output, start_new_session=True
        )


def wait_for_page(process: subprocess.Popen, log: Path, seconds: float = 1200) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"make run exited ({process.returncode}); its output:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(CHAT + "/", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the page did not answer within {seconds:g} s")


def first_answer() -> str:
    """Ask the built-in model in Chromium and wait for the whole answer."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(CHAT + "/")
        page.fill("#message-input", "What is the capital of France?")
        page.keyboard.press("Enter")
        answer = page.locator(".message.assistant.done .body")
        answer.wait_for(timeout=120_000)
        text = answer.inner_text()
        browser.close()
    return text


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)


def starts(checkouts: list[Path], rounds: int) -> None:
    """Each installed checkout's start, in turns, `rounds` times: seconds until the page answers."""
    environment = {**os.environ, "HF_API_TOKEN": "", "API_URL": ""}
    environment.pop("VIRTUAL_ENV", None)
    seconds: dict[Path, list[float]] = {checkout: [] for checkout in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(rounds):
            for checkout in checkouts:
                log = Path(scratch) / f"{checkout.name}.log"
                started = time.monotonic()
                process = start(checkout, environment, log, SERVE)
                try:
                    wait_for_page(process, log, seconds=120)
                    seconds[checkout].append(time.monotonic() - started)
                finally:
                    stop(process)
    for checkout, taken in seconds.items():
        listed = ", ".join(f"{value:.2f}" for value in taken)
        print(f"{checkout}: page after {statistics.median(taken):.2f} s median ({listed})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep-cache", action="store_true", help="keep ~/.cache (a machine that built it before)")
    parser.add_argument("--starts", nargs="+", type=Path, help="installed checkouts whose start to time in turns")
    parser.add_argument("--rounds", type=int, default=5, help="starts of each checkout, with --starts")
    options = parser.parse_args()
    if options.starts:
        starts(options.starts, options.rounds)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        checkout, log = folder / "chat", folder / "make-run.log"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
        environment = {**os.environ, "PIP_NO_CACHE_DIR": "1", "HF_API_TOKEN": "", "API_URL": ""}
        environment.pop("VIRTUAL_ENV", None)
        if not options.keep_cache:
            environment["XDG_CACHE_HOME"] = str(folder / "cache")
        started = time.monotonic()
        process = start(checkout, environment, log)
        try:
            wait_for_page(process, log)
            page_at = time.monotonic() - started
            text = first_answer()
            answer_at = time.monotonic() - started
        finally:
            stop(process)
        started = time.monotonic()
        process = start(checkout, environment, log)
        try:
            wait_for_page(process, log)
            second = time.monotonic() - started
        finally:
            stop(process)
    print(f"fresh clone, {'warm' if options.keep_cache else 'empty'} cache: page after {page_at:.1f} s, ", end="")
    print(f"first answer in Chromium after {answer_at:.1f} s ({text.strip()[:60]!r})")
    print(f"second start: page after {second:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
