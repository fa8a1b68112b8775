"""What a model's server and the Hub say of it: context length, the model's own chat template, and whether it
takes tools (llama.cpp's `chat_template_caps`: whether the template has a place for them).

Asked once per server (TGI `GET /info`, llama.cpp `GET /props`) and once per
Hub model (its `tokenizer_config.json`, kept on disk so it works offline
afterwards). Every question is optional: when nothing answers, the built-in
chat formats and no trimming are used. A server that says nothing of its
context window may name it when it refuses a prompt too long for it: that
window is remembered for the model (`learn_context_length`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from chatbot.services import prompts
from chatbot.services.errors import InferenceError
from chatbot.services.inference import Backend
from chatbot.services.protocols import PROTOCOLS
from chatbot.services.remembered import Remembered

ASK_TIMEOUT = 3.0
COUNTS_KEPT = 4096  # token counts of texts, per process
_lock = threading.Lock()
_known: Remembered[str, dict[str, Any]] = Remembered(_lock)
_counts: Remembered[tuple[str, str, str], int] = Remembered(_lock)
_windows: Remembered[tuple[str, str], int] = Remembered(_lock)  # (server, model) -> the window named in a refusal


def with_server_facts(backend: Backend) -> Backend:
    """The backend completed with its context length, chat template and whether it takes tools (when it was not
    configured), when anything tells them."""
    facts = {} if "huggingface.co" in backend.url else _remembered(backend.url, lambda: _ask_server(backend))
    template = backend.template or facts.get("template")
    if template is None and PROTOCOLS[backend.api].takes_prompt and "/" in backend.model_id:
        template = _remembered("hub:" + backend.model_id, lambda: _ask_hub(backend)).get("template")
    known = [backend.context_length or facts.get("context_length"), _windows.get((backend.url, backend.model_id))]
    context_length = min((length for length in known if length), default=None)
    takes_tools = backend.takes_tools if backend.takes_tools is not None else facts.get("takes_tools")
    return dataclasses.replace(backend, template=template, context_length=context_length, takes_tools=takes_tools)


def learn_context_length(backend: Backend, error: InferenceError) -> bool:
    """Remember the context window a server named when it refused a prompt too long for `backend` (as completed
    by with_server_facts); True when it is smaller than the one the prompt was trimmed to, so trimming again helps."""
    window = error.context_length if error.kind == "too_long" else None
    if not window or (backend.context_length and window >= backend.context_length):
        return False
    with _lock:
        _windows[(backend.url, backend.model_id)] = window
    return True


def _remembered(key: str, ask) -> dict[str, Any]:
    with _lock:
        facts = _known.get(key)
    if facts is None:
        facts = ask()
        with _lock:
            _known[key] = facts
    return facts


def _headers(backend: Backend) -> dict[str, str]:
    return {"Authorization": f"Bearer {backend.token}"} if backend.token else {}


def served_by_hugging_face(url: str) -> bool:
    """Whether the model's server is Hugging Face's (the router, an Inference Endpoint): only then does the Hub
    get the token, which for a local server is that server's own key."""
    host = urlsplit(url).hostname or ""
    return host == "huggingface.co" or host.endswith((".huggingface.co", ".huggingface.cloud"))


def _get_json(url: str, backend: Backend, with_token: bool = True) -> dict[str, Any] | None:
    headers = _headers(backend) if with_token else {}
    try:
        response = requests.get(url, headers=headers, timeout=min(backend.connect_timeout, ASK_TIMEOUT))
        body = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _ask_server(backend: Backend) -> dict[str, Any]:
    root = _root(backend.url)
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
        if PROTOCOLS[backend.api].takes_prompt and (template := prompts.chat_template_from(body)) is not None:
            facts.setdefault("template", template)
        # llama.cpp (started with --jinja): what the model's template can render; a template with no place for
        # tools would get them in llama.cpp's generic format, which a model not trained for it follows poorly.
        caps = body.get("chat_template_caps")
        if isinstance(caps, dict) and isinstance(caps.get("supports_tools"), bool):
            facts.setdefault("takes_tools", caps["supports_tools"])
    return facts


def token_counter(backend: Backend) -> Callable[[str], int] | None:
    """Exact token counts from the server's `POST /tokenize` (llama.cpp, TGI, vLLM), None where it has none.
    Each text is counted once (by its hash), so a long conversation costs requests only for its new turns."""
    if "huggingface.co" in backend.url:
        return None
    root = _root(backend.url)
    works = _remembered("tokenize:" + root, lambda: {"works": _tokenize(root, backend, "Hello") is not None})
    if not works["works"]:
        return None

    def count(text: str) -> int:
        key = (root, backend.model_id, hashlib.sha256(text.encode()).hexdigest())
        with _lock:
            known = _counts.get(key)
        if known is None:
            known = _tokenize(root, backend, text)
            if known is None:
                return prompts.estimate_tokens(text) - prompts.TURN_MARKERS
            with _lock:
                if len(_counts) >= COUNTS_KEPT:
                    _counts.pop(next(iter(_counts)))
                _counts[key] = known
        return known

    return count


def _tokenize(root: str, backend: Backend, text: str) -> int | None:
    """One count: llama.cpp reads `content`, TGI `inputs`, vLLM `model` and `prompt`; each answers its own way."""
    body = {"content": text, "inputs": text, "prompt": text, "model": backend.model_id}
    try:
        response = requests.post(root + "/tokenize", json=body, headers=_headers(backend), timeout=ASK_TIMEOUT)
        answer = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    if isinstance(answer, list):  # TGI: one entry per token
        return len(answer)
    if isinstance(answer, dict) and isinstance(answer.get("count"), int):  # vLLM
        return answer["count"]
    if isinstance(answer, dict) and isinstance(answer.get("tokens"), list):  # llama.cpp
        return len(answer["tokens"])
    return None


def _root(url: str) -> str:
    return urlsplit(url)._replace(path="", query="", fragment="").geturl()


def hub_cache() -> Path:
    return Path(os.environ.get("CHAT_HUB_CACHE") or Path.home() / ".cache" / "chatbot" / "hub")


def _ask_hub(backend: Backend) -> dict[str, Any]:
    """The model's tokenizer_config.json from the Hub (HF_ENDPOINT), or the copy kept from last time."""
    cached = hub_cache() / backend.model_id / "tokenizer_config.json"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    resolve = f"{endpoint}/{quote(backend.model_id)}/resolve/main/tokenizer_config.json"
    config = _get_json(resolve, backend, with_token=served_by_hugging_face(backend.url))
    if config is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(config), encoding="utf-8")
    elif cached.is_file():
        config = json.loads(cached.read_text(encoding="utf-8"))
    template = prompts.chat_template_from(config) if config else None
    return {"template": template} if template else {}
