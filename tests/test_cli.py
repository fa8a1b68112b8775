"""`make run`'s command: with no token and no API_URL it serves the chat on the embedded model."""

import os
import re
import signal
import subprocess
import sys
import time

import requests

from chatbot.local_model import free_port
from tests.conftest import app_environment
from tests.servers import FINISHED, ROOT, ChatClient


def wait_for(url, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the serve command exited early"
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def test_serve_starts_the_local_model_and_ctrl_c_stops_both(tmp_path):
    port = free_port()
    environment = {**os.environ, **app_environment(tmp_path, MAX_NEW_TOKENS="20")}
    for unset in ("API_URL", "HF_API_TOKEN", "HF_TOKEN"):
        environment.pop(unset)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/static/favicon.svg", process)
        chat = ChatClient(f"http://127.0.0.1:{port}")
        assert "gemma-3-270m" in chat.page()
        frames = chat.exchange("Hello")
        assert FINISHED.search(frames[-1]).group(2) == "done"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    model_url = re.search(r"Local model ready at (\S+)", output).group(1)
    assert process.returncode is not None
    for url in (model_url + "/models", f"http://127.0.0.1:{port}/"):
        try:
            requests.get(url, timeout=1)
            raise AssertionError(f"{url} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass
