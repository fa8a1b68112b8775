"""`flask doctor`: check the configuration and reach each model and MCP server, saying what to change."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chatbot.chat import picker
from chatbot.local_model.server import (
    MODEL_NAME,
    SYSTEM_PROMPT,
    LocalModelServer,
    describe_exit,
    model_file,
    server_binary,
)
from chatbot.local_model.status import ModelStatus
from chatbot.services import catalogue, discovery, inference, tools
from chatbot.services.errors import InferenceError
from chatbot.services.models import ModelSpec

PROBE = [{"role": "user", "content": "Say hello."}]
WARNINGS = {"loading"}  # the chat waits for these by itself
REBUILD_HINT = (
    "Build it again: delete ~/.cache/chatbot/llama-server and .venv/bin/llama-server, then run `make run`. "
    "Or use another model: set HF_API_TOKEN or API_URL in .env."
)


@dataclass
class Finding:
    ok: bool
    text: str
    hint: str = ""
    fatal: bool = True


def diagnose(config: dict, instance_path: str) -> Iterator[Finding]:
    """What works and what does not, MCP server by server (each lists its tools) and model by model (one probe
    request each)."""
    yield from _tool_servers(config)
    token = config.get("HF_API_TOKEN")
    yield Finding(True, f"Hugging Face token: {'set' if token else 'not set'}")
    if not token and not config.get("API_URL") and not config.get("MODELS_SOURCE"):
        yield from _built_in_model(Path(instance_path))
        return
    for line in picker.not_live(config):
        yield Finding(False, line, "Pick a live model: set MODEL_ID (or MODELS) in .env.", fatal=False)
    for spec in config["MODELS"]:
        yield _probe(spec, config)


def _tool_servers(config: dict) -> Iterator[Finding]:
    """Each MCP server asked for its tools; one that does not answer is no failure of the chat (it answers without
    that server's tools), but is told with what to check."""
    for check in tools.check_servers(config["TOOL_SERVERS"], config["CONNECT_TIMEOUT"]):
        where = f"MCP server {check.server.name} ({check.server.transport})"
        if check.problem:
            hint = (
                f"Start it, or fix its {'command' if check.server.transport == 'stdio' else 'url'} in MCP_SERVERS "
                "or MCP_CONFIG; until then the model is not offered its tools."
            )
            yield Finding(False, f"{where}: does not answer: {check.problem}", hint, fatal=False)
        else:
            count = len(check.tools)
            yield Finding(True, f"{where}: ok, {count} tool{'s' if count != 1 else ''}")


def _built_in_model(instance: Path) -> Iterator[Finding]:
    """The built-in model: installed, how `make run`'s copy is doing, and one real question to a fresh copy."""
    yield Finding(
        True,
        f"No HF_API_TOKEN and no API_URL: `make run` serves the built-in model ({MODEL_NAME}).",
        "For a Hugging Face model, set HF_API_TOKEN in .env; for your own server, set API_URL.",
    )
    try:
        yield Finding(True, f"llama.cpp server: {server_binary()}; model: {model_file()}")
    except FileNotFoundError as error:
        yield Finding(False, str(error))
        return
    running = ModelStatus.load(instance / "local-model.json")
    if running and running.state != "stopped":
        reason = running.reason()
        yield Finding(not reason, f"`make run`'s built-in model: {reason or 'running'}", running.log, fatal=False)
    with tempfile.TemporaryDirectory() as scratch:
        server = LocalModelServer(log=Path(scratch) / "local-model.log")
        try:
            server.start()
        except RuntimeError as error:
            yield Finding(False, f"The built-in model did not start: {error}", REBUILD_HINT)
            return
        try:
            yield ask_built_in_model(server)
        finally:
            server.stop()


def ask_built_in_model(server: LocalModelServer) -> Finding:
    """One real question; a crash is told with its cause and the server's last lines."""
    backend = inference.Backend(api="chat", url=server.url, model_id=server.model_id)
    question = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    started = time.monotonic()
    try:
        request = inference.build_request(backend, inference.Parameters(max_new_tokens=16, do_sample=False), question)
        text = "".join(inference.stream_reply(request, backend))
    except InferenceError as error:
        time.sleep(0.5)  # a crashed server has exited by now
        assert server.process is not None  # started by the caller
        if server.process.poll() is None:
            return Finding(False, f"The built-in model failed to answer: {error.message}", error.hint)
        return Finding(
            False,
            f"The built-in model crashed while answering ({describe_exit(server.process.returncode)}). "
            "Its last lines:\n" + server.last_lines(),
            REBUILD_HINT,
        )
    seconds = time.monotonic() - started
    return Finding(bool(text.strip()), f"The built-in model answered {text.strip()[:60]!r} in {seconds:.1f} s")


def _probe(spec: ModelSpec, config: dict) -> Finding:
    backend = discovery.with_server_facts(inference.backend_for(spec, config))
    where = f"{spec.name} ({spec.api} at {backend.url})"
    parameters = inference.Parameters(max_new_tokens=8, do_sample=False)
    started = time.monotonic()
    try:
        request = inference.build_request(backend, parameters, PROBE)
        text = "".join(inference.stream_reply(request, backend))
    except InferenceError as error:
        error = catalogue.with_alternatives(error, backend)
        if error.kind in WARNINGS:
            return Finding(
                True, f"{where}: {error.message}", "The chat waits for it and answers when it is ready.", fatal=False
            )
        return Finding(False, f"{where}: {error.message}", error.hint)
    if not text.strip():
        return Finding(False, f"{where}: the model answered with no text.", InferenceError.empty(backend.url).hint)
    context = f", context {backend.context_length} tokens" if backend.context_length else ""
    return Finding(True, f"{where}: answered {text.strip()[:40]!r} in {time.monotonic() - started:.1f} s{context}")
