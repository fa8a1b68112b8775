"""What a model's server and the Hub say of it: context length and the model's own chat template.

Asked once per server (TGI `GET /info`, llama.cpp `GET /props`) and once per
Hub model (its `tokenizer_config.json`, kept on disk so it works offline
afterwards). Every question is optional: when nothing answers, the built-in
chat formats and no trimming are used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from chatbot.services import prompts
from chatbot.services.inference import Backend

ASK_TIMEOUT = 3.0
_known: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def forget() -> None:
    """Ask every server and the Hub again (after a change, and between tests)."""
    with _lock:
        _known.clear()


def with_server_facts(backend: Backend) -> Backend:
    """The backend completed with its context length and chat template, when anything tells them."""
    facts = {} if "huggingface.co" in backend.url else _remembered(backend.url, lambda: _ask_server(backend))
    template = backend.template or facts.get("template")
    if template is None and backend.api != "chat" and "/" in backend.model_id:
        template = _remembered("hub:" + backend.model_id, lambda: _ask_hub(backend)).get("template")
    context_length = backend.context_length or facts.get("context_length")
    return dataclasses.replace(backend, template=template, context_length=context_length)


def _remembered(key: str, ask) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with _lock:
        facts = _known.get(key)
    if facts is None:
        facts = ask()
        with _lock:
            _known[key] = facts
    return facts


def _headers(backend: Backend) -> dict[str, str]:
    return {"Authorization": f"Bearer {backend.token}"} if backend.token else {}


def _get_json(url: str, backend: Backend) -> dict[str, Any] | None:
    try:
        response = requests.get(url, headers=_headers(backend), timeout=min(backend.connect_timeout, ASK_TIMEOUT))
        body = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _ask_server(backend: Backend) -> dict[str, Any]:
    root = urlsplit(backend.url)._replace(path="", query="", fragment="").geturl()
    facts: dict[str, Any] = {}
    for route in ("/info", "/props"):
        body = _get_json(root + route, backend)
        if body is None:
            continue
        settings = body.get("default_generation_settings") or {}
        # TGI: the total (prompt and answer) it allows; llama.cpp: its context window.
        context = body.get("max_total_tokens") or body.get("n_ctx") or settings.get("n_ctx")
        if isinstance(context, int) and context > 0:
            facts.setdefault("context_length", context)
        if backend.api != "chat" and (template := prompts.chat_template_from(body)) is not None:
            facts.setdefault("template", template)
    return facts


def hub_cache() -> Path:
    return Path(os.environ.get("CHAT_HUB_CACHE") or Path.home() / ".cache" / "chatbot" / "hub")


def _ask_hub(backend: Backend) -> dict[str, Any]:
    """The model's tokenizer_config.json from the Hub (HF_ENDPOINT), or the copy kept from last time."""
    cached = hub_cache() / backend.model_id / "tokenizer_config.json"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    config = _get_json(f"{endpoint}/{quote(backend.model_id)}/resolve/main/tokenizer_config.json", backend)
    if config is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(config), encoding="utf-8")
    elif cached.is_file():
        config = json.loads(cached.read_text(encoding="utf-8"))
    template = prompts.chat_template_from(config) if config else None
    return {"template": template} if template else {}
