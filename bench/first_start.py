"""The first five minutes of a new user: `make run` on a fresh clone until the first answer in a browser.

Run: .venv/bin/python bench/first_start.py [--keep-cache]
Clones this repository's HEAD into a temporary folder and runs `make run` there as a new user would, with an
empty pip cache and (unless --keep-cache) an empty ~/.cache, so llama.cpp's server is built from scratch.
Times: until the page answers, until Chromium (Debian's) shows the first whole answer of the built-in model;
then Ctrl-C, and a second `make run` until the page answers. Needs port 8000 free.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHAT = "http://127.0.0.1:8000"


def start(checkout: Path, environment: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            ["make", "run"], cwd=checkout, env=environment, stdout=output, stderr=output, start_new_session=True
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep-cache", action="store_true", help="keep ~/.cache (a machine that built it before)")
    options = parser.parse_args()
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
