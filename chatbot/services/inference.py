"""Backends: payload construction, the Hugging Face / local URL switch, streaming, errors.

Two request shapes cover the servers people use (protocols.md):
- "text-generation": the Hugging Face task payload {"inputs", "parameters", "options"}
  (HF router, Inference Endpoints, TGI);
- "chat": OpenAI-compatible chat completions (HF router /v1, TGI, vLLM,
  llama.cpp, text-generation-webui, Ollama).
Every failure becomes one `InferenceError` with a kind, a message and a hint.
"""

from __future__ import annotations

import codecs
import functools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from jinja2 import TemplateError

from chatbot.services import prompts
from chatbot.services.errors import InferenceError, error_from_response, error_message
from chatbot.services.prompts import Turn
from config import ModelSpec

HF_TEXT_GENERATION_URL = "https://router.huggingface.co/hf-inference/models/{model_id}"
HF_CHAT_URL = "https://router.huggingface.co/v1"
READ_SIZE = 65536
DONE: dict[str, Any] = {}  # the `[DONE]` line, compared by identity


@dataclass(frozen=True)
class Parameters:
    """Generation parameters, with the defaults of the user's notes."""

    max_new_tokens: int = 250
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True


@dataclass(frozen=True)
class Backend:
    """Where and how to ask for an answer."""

    api: str
    url: str
    model_id: str
    token: str | None = field(default=None, repr=False)
    wait_for_model: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    chat_format: str | None = None  # None: found from the model id
    template: prompts.ChatTemplate | None = None  # the model's own chat template, preferred when known
    context_length: int | None = None  # tokens; None: unknown, history is not trimmed

    def prompt(self, turns: list[Turn]) -> prompts.Prompt:
        """The prompt for prompt-taking APIs, in the model's own format."""
        family = prompts.format_prompt(self.model_id, turns, self.chat_format)
        if self.template is None:
            return family
        try:
            rendered = self.template.render(turns)
        except TemplateError as error:
            raise InferenceError(
                "template",
                f"The model's chat template could not write this conversation: {error}.",
                "Fix or remove the model's tokenizer_config in MODELS, or set its chat_format instead.",
                url=self.url,
            ) from None
        return prompts.Prompt(rendered.text, tuple(dict.fromkeys(rendered.stop + family.stop)))


@dataclass(frozen=True)
class Request:
    """One prepared HTTP call: the URL, the headers and the JSON body."""

    url: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    stop: tuple[str, ...] = ()


def backend_for(spec: ModelSpec, config: Mapping[str, Any]) -> Backend:
    """The backend for one model of the list; with no URL, the Hugging Face router."""
    model_id = prompts.hub_model_id(spec.id) if spec.api == "text-generation" else spec.id
    default_url = HF_CHAT_URL if spec.api != "text-generation" else HF_TEXT_GENERATION_URL.format(model_id=model_id)
    return Backend(
        api=spec.api,
        url=spec.url or default_url,
        model_id=model_id,
        token=config.get("HF_API_TOKEN"),
        wait_for_model=config["WAIT_FOR_MODEL"],
        connect_timeout=config["CONNECT_TIMEOUT"],
        read_timeout=config["READ_TIMEOUT"],
        chat_format=spec.chat_format,
        template=_file_template(spec.tokenizer_config) if spec.tokenizer_config else None,
        context_length=spec.context_length,
    )


def backend_from_config(config: Mapping[str, Any]) -> Backend:
    """The backend of the first (or only) configured model."""
    return backend_for(config["MODELS"][0], config)


@functools.cache
def _file_template(path: str) -> prompts.ChatTemplate | None:
    return prompts.read_chat_template(path)


def _headers(backend: Backend) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if backend.token:
        headers["Authorization"] = f"Bearer {backend.token}"
    return headers


CONTINUE_ASK = "Continue exactly where your last answer stopped, without repeating any of it."


def build_request(backend: Backend, parameters: Parameters, turns: list[Turn], continuing: str = "") -> Request:
    """The request that asks `backend` to answer the conversation `turns`, or to go on with the
    answer `continuing` that stopped at the length limit."""
    if backend.api == "chat":
        if continuing:  # chat APIs start a new message: ask for the rest in words
            turns = [*turns, {"role": "assistant", "content": continuing}, {"role": "user", "content": CONTINUE_ASK}]
        return _chat_request(backend, parameters, turns)
    if backend.api == "completions":
        return _completions_request(backend, parameters, turns, continuing)
    return _text_generation_request(backend, parameters, turns, continuing)


def _sampling(parameters: Parameters) -> dict[str, Any]:
    """OpenAI-style sampling fields: greedy decoding is temperature 0."""
    if not parameters.do_sample:
        return {"temperature": 0.0}
    return {"temperature": parameters.temperature, "top_p": parameters.top_p}


def _text_generation_request(backend: Backend, parameters: Parameters, turns: list[Turn], continuing: str) -> Request:
    prompt = backend.prompt(turns)
    generation: dict[str, Any] = {
        "max_new_tokens": parameters.max_new_tokens,
        "do_sample": parameters.do_sample,
        "return_full_text": False,
        "stop": list(prompt.stop),
    }
    if parameters.do_sample:
        generation["temperature"] = parameters.temperature
        generation["top_p"] = parameters.top_p
    payload = {
        "inputs": prompt.text + continuing,  # a prompt that ends inside the answer: the model goes on
        "parameters": generation,
        "options": {"wait_for_model": backend.wait_for_model, "use_cache": False},
        "stream": True,
    }
    headers = _headers(backend)
    headers["x-wait-for-model"] = "true" if backend.wait_for_model else "false"
    headers["x-use-cache"] = "false"
    return Request(url=backend.url, payload=payload, headers=headers, stop=prompt.stop)


def _chat_request(backend: Backend, parameters: Parameters, turns: list[Turn]) -> Request:
    system, alternating = prompts.alternate(turns)
    messages = ([{"role": "system", "content": system}] if system else []) + alternating
    payload = {
        "model": backend.model_id,
        "messages": messages,
        "max_tokens": parameters.max_new_tokens,
        **_sampling(parameters),
        "stream": True,
    }
    return Request(url=_openai_url(backend.url, "/chat/completions"), payload=payload, headers=_headers(backend))


def _completions_request(backend: Backend, parameters: Parameters, turns: list[Turn], continuing: str) -> Request:
    """OpenAI-compatible /completions with the prompt in the model's own format."""
    prompt = backend.prompt(turns)
    text = prompt.text.removeprefix("<bos>").removeprefix("<s>") + continuing  # the server adds the BOS token
    payload = {
        "model": backend.model_id,
        "prompt": text,
        "max_tokens": parameters.max_new_tokens,
        **_sampling(parameters),
        "stop": list(prompt.stop),
        "stream": True,
    }
    return Request(
        url=_openai_url(backend.url, "/completions"), payload=payload, headers=_headers(backend), stop=prompt.stop
    )


def _openai_url(base: str, route: str) -> str:
    """`base` + `route`, unless the URL already names the route."""
    return base if base.endswith(route) else base + route


class Cooldowns:
    """When each server said to come back (429): no request goes to it before then."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def left(self, url: str) -> float:
        with self._lock:
            return max(0.0, self._until.get(url, 0.0) - time.monotonic())

    def hold(self, url: str, seconds: float) -> None:
        with self._lock:
            self._until[url] = time.monotonic() + seconds

    def clear(self) -> None:
        with self._lock:
            self._until.clear()


COOLDOWNS = Cooldowns()
RATE_LIMIT_PAUSE = 60.0  # seconds to wait after a 429 that gives no Retry-After


def stream_reply(
    request: Request,
    backend: Backend,
    cancel: threading.Event | None = None,
    session: requests.Session | None = None,
    outcome: dict[str, Any] | None = None,
) -> Iterator[str]:
    """Yield the answer's text as it arrives; raise InferenceError for any failure.
    `outcome` gets the "finish_reason" ("length" when the answer hit max_new_tokens)."""
    http = session or requests
    wait = COOLDOWNS.left(request.url)
    if wait:
        raise InferenceError.cooling_down(request.url, wait)
    try:
        response = http.post(
            request.url,
            json=request.payload,
            headers=request.headers,
            stream=True,
            timeout=(backend.connect_timeout, backend.read_timeout),
        )
    except requests.ConnectTimeout:
        raise InferenceError.timeout(request.url, backend.connect_timeout, "CONNECT_TIMEOUT") from None
    except requests.Timeout:
        raise InferenceError.timeout(request.url, backend.read_timeout, "READ_TIMEOUT") from None
    except requests.RequestException as error:
        raise InferenceError.unreachable(request.url, error) from None
    with response:
        if response.status_code != 200:
            error = error_from_response(response.status_code, response.headers, response.text, backend, request.url)
            if error.kind == "rate_limit":
                COOLDOWNS.hold(request.url, error.retry_after or RATE_LIMIT_PAUSE)
            raise error
        yield from _answer_text(response, backend, request.url, cancel, outcome)


def _answer_text(
    response: requests.Response,
    backend: Backend,
    url: str,
    cancel: threading.Event | None,
    outcome: dict[str, Any] | None,
) -> Iterator[str]:
    finished: str | None = None
    text_seen = False
    try:
        for event in _events(response, cancel):
            if event.get("error"):
                raise InferenceError.in_stream(error_message(event) or "unknown error", url, event.get("error_type"))
            text, reason = _event_text(event)
            if text and text.strip() not in prompts.SPECIAL_TOKENS:
                text_seen = True
                yield text
            finished = finished or reason
            if outcome is not None and reason:
                outcome.setdefault("finish_reason", "length" if reason in LENGTH_REASONS else reason)
    except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
        raise InferenceError.timeout(url, backend.read_timeout, "READ_TIMEOUT", reading=True) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise InferenceError.truncated(url, "the connection broke before the answer ended") from None
    except ValueError as error:
        raise InferenceError.malformed(url, str(error)) from None
    if cancel is not None and cancel.is_set():
        return
    if not finished and _streams_a_finish(response):
        detail = "the server closed the stream before the answer ended"
        if not text_seen:
            detail = "the server closed the stream without an answer (a prompt longer than its context does this)"
        raise InferenceError.truncated(url, detail)


def _streams_a_finish(response: requests.Response) -> bool:
    """Event streams say when they are done; a plain JSON body is whole by itself."""
    return "text/event-stream" in response.headers.get("Content-Type", "")


LENGTH_REASONS = {"length", "limit", "max_tokens"}  # each server's word for "stopped at max_new_tokens"


def _event_text(event: dict[str, Any]) -> tuple[str, str | None]:
    """The text an event adds and, when it ends the answer, why it ended, for every wire format."""
    if event is DONE:
        return "", "stop"
    if "choices" in event:  # OpenAI-compatible chunk or whole completion
        if not event["choices"]:
            return "", None  # a usage-only chunk
        choice = event["choices"][0]
        part = choice.get("delta") or choice.get("message") or {}
        return part.get("content") or choice.get("text") or "", choice.get("finish_reason")
    if "token" in event:  # HF task / TGI stream
        token = event["token"] or {}
        text = "" if token.get("special") else token.get("text") or ""
        details = event.get("details") or {}
        ended = event.get("generated_text") is not None or bool(details)
        return text, (details.get("finish_reason") or "stop") if ended else None
    if "generated_text" in event:  # a whole, non-streamed answer
        return event["generated_text"] or "", "stop"
    if "content" in event and "stop" in event:  # llama.cpp native /completion
        return event["content"] or "", (event.get("stop_type") or "stop") if event["stop"] else None
    if "message" in event and "done" in event:  # Ollama native /api/chat
        text = (event["message"] or {}).get("content") or ""
        return text, (event.get("done_reason") or "stop") if event["done"] else None
    return "", None


def _events(response: requests.Response, cancel: threading.Event | None) -> Iterator[dict[str, Any]]:
    """Parse SSE `data:` lines, NDJSON lines or a whole JSON body into events."""
    content_type = response.headers.get("Content-Type", "")
    if "text/event-stream" not in content_type and "ndjson" not in content_type:
        try:
            body = json.loads(response.text)
        except ValueError:
            raise ValueError(response.text) from None
        for event in body if isinstance(body, list) else [body]:
            if not isinstance(event, dict):
                raise ValueError(response.text)
            yield event
        return
    for line in _lines(response):
        if cancel is not None and cancel.is_set():
            return
        event = _parse_line(line)
        if event is not None:
            yield event


def _parse_line(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line or line.startswith(":"):
        return None
    if line.startswith("data:"):
        line = line[5:].strip()
    elif not line.startswith("{"):
        return None  # "event:", "id:", "retry:" fields carry no text
    if line == "[DONE]":
        return DONE
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise ValueError(line)
    return event


def _lines(response: requests.Response) -> Iterator[str]:
    """Lines of the body as soon as each arrives (iter_lines would hold them back)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        chunk = response.raw.read1(READ_SIZE)
        if not chunk:
            break
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        yield from complete
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending
