"""Asking a backend for an answer: the URL switch, the HTTP call, the stream, every failure.

The request body and the reading of each event belong to the backend's protocol
(chatbot/services/protocols: the Hugging Face text-generation task, OpenAI chat
completions, OpenAI completions); the stream is read with chatbot/services/sse.py.
Every failure becomes one `InferenceError` with a kind, a message and a hint.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from chatbot.services import http_body, http_client, prompts, redaction, sse, thinking, unicode_text
from chatbot.services.backend import Backend, Parameters, Request, stream_chars
from chatbot.services.errors import CONTEXT_LENGTH_HINT, InferenceError, error_from_response, error_message
from chatbot.services.models import ModelSpec
from chatbot.services.prompts import Turn
from chatbot.services.protocols import PROTOCOLS, Chunk, Finish, Protocol, Provider, Reasoning, Text, ToolCallPiece
from chatbot.services.remembered import Remembered

READ_SIZE = 65536
BODY_BYTES_PER_CHAR = 64  # of a stream's body per character it may say: an event is JSON around a token's text
PAUSE_SECONDS = 0.0005  # before reading again a server that writes faster than the answer is read
WAITED_SECONDS = 0.0005  # a read this long waited for the server (one that finds bytes waiting takes microseconds)

__all__ = ["Backend", "Parameters", "Request", "backend_for", "build_request", "stream_chunks", "stream_reply"]


def backend_for(spec: ModelSpec, config: Mapping[str, Any]) -> Backend:
    """The backend for one model of the list; with no URL, the protocol's Hugging Face address."""
    protocol = PROTOCOLS[spec.api]
    model_id = protocol.model_id(spec.id)
    return Backend(
        api=spec.api,
        url=spec.url or protocol.default_url(model_id),
        model_id=model_id,
        token=config.get("HF_API_TOKEN"),
        wait_for_model=config["WAIT_FOR_MODEL"],
        connect_timeout=config["CONNECT_TIMEOUT"],
        read_timeout=config["READ_TIMEOUT"],
        chat_format=spec.chat_format,
        template=_file_template(spec.tokenizer_config) if spec.tokenizer_config else None,
        context_length=spec.context_length,
        takes_tools=spec.tools,
    )


def backend_from_config(config: Mapping[str, Any]) -> Backend:
    """The backend of the first (or only) configured model."""
    return backend_for(config["MODELS"][0], config)


@functools.cache
def _file_template(path: str) -> prompts.ChatTemplate | None:
    return prompts.read_chat_template(path)


def build_request(
    backend: Backend,
    parameters: Parameters,
    turns: list[Turn],
    continuing: str = "",
    tools: list[dict[str, Any]] | None = None,
) -> Request:
    """The request that asks `backend` to answer the conversation `turns`, or to go on with the
    answer `continuing` that stopped at the length limit; offering `tools` when its protocol takes them. Its
    stream may say what `parameters.max_new_tokens` tokens could (backend.stream_chars), no more."""
    request = PROTOCOLS[backend.api].request(backend, parameters, turns, continuing, tools)
    return dataclasses.replace(request, max_chars=stream_chars(parameters.max_new_tokens))


_come_back: Remembered[str, float] = Remembered()  # when each server said to come back (429): nothing before
RATE_LIMIT_PAUSE = 60.0  # seconds to wait after a 429 that gives no Retry-After


def stream_reply(request: Request, backend: Backend, cancel: threading.Event | None = None) -> Iterator[str]:
    """The answer's text as it arrives; raise InferenceError for any failure."""
    for chunk in stream_chunks(request, backend, cancel):
        if isinstance(chunk, Text):
            yield chunk.text


def stream_chunks(request: Request, backend: Backend, cancel: threading.Event | None = None) -> Iterator[Chunk]:
    """What the server says of the answer as it arrives (text, its end, usage); raise InferenceError for any
    failure. Neither says the token, whatever the server echoes."""
    secrets = redaction.secrets_of(backend)
    try:
        yield from redaction.redacted(_stream_chunks(request, backend, cancel), secrets)
    except InferenceError as error:
        raise redaction.scrubbed(error, secrets) from None


def _stream_chunks(request: Request, backend: Backend, cancel: threading.Event | None) -> Iterator[Chunk]:
    wait = max(0.0, _come_back.get(request.url, 0.0) - time.monotonic())
    if wait:
        raise InferenceError.cooling_down(request.url, wait)
    try:
        response = http_client.post(
            request.url,
            orjson.dumps(request.payload),
            request.headers,
            backend.connect_timeout,
            backend.read_timeout,
        )
    except http_client.ConnectTimeout:
        raise InferenceError.timeout(request.url, backend.connect_timeout, "CONNECT_TIMEOUT") from None
    except TimeoutError:
        raise InferenceError.timeout(request.url, backend.read_timeout, "READ_TIMEOUT") from None
    except (OSError, http.client.HTTPException, ValueError) as failure:
        raise InferenceError.unreachable(request.url, failure) from None
    with response:
        if response.status != 200:
            error = error_from_response(
                response.status,
                response.headers,
                response.text(),
                request.url,
                backend.model_id,
                backend.token,
                backend.context_length,
            )
            if error.kind == "rate_limit":
                _come_back[request.url] = time.monotonic() + (error.retry_after or RATE_LIMIT_PAUSE)
            raise error
        if provider := response.headers.get("x-inference-provider"):
            yield Provider.said(provider)
        answered = _close_on_stop(response, cancel)
        try:
            read = _answer(response, backend, request.url, cancel, BODY_BYTES_PER_CHAR * request.max_chars)
            answer = _at_most(read, request.max_chars, request.url)
            yield from thinking.split_inline(unicode_text.repaired(answer))
        finally:
            answered.set()


STOP_CHECK_SECONDS = 0.25


def _close_on_stop(response: http_client.Response, cancel: threading.Event | None) -> threading.Event:
    """Close the connection as soon as Stop is pressed, even while the reader waits inside a read (a server that
    stalls, or writes a line without end); the event returned ends the watch when the answer is over. A
    connection so closed is never used again: its body was not read to its end."""
    answered = threading.Event()
    if cancel is not None and response.stream is not None:
        stream = response.stream

        def watch() -> None:
            while not answered.wait(STOP_CHECK_SECONDS):
                if cancel.is_set():
                    try:
                        stream.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread; close would not
                    except OSError:
                        pass  # already closed
                    return

        threading.Thread(target=watch, daemon=True, name="reply-stop").start()
    return answered


def _answer(
    response: http_client.Response, backend: Backend, url: str, cancel: threading.Event | None, max_bytes: int
) -> Iterator[Chunk]:
    protocol = PROTOCOLS[backend.api]
    finished = text_seen = False
    try:
        for events in _event_batches(response, cancel, max_bytes, url):
            for chunk in _read_chunks(events, protocol, url):
                if isinstance(chunk, Text | Reasoning):
                    text_seen = True
                elif isinstance(chunk, Finish):
                    if finished:
                        continue  # [DONE] after the finishing chunk says nothing new
                    finished = True
                yield chunk
    except (http.client.HTTPException, OSError, ValueError) as error:
        if cancel is not None and cancel.is_set():
            return  # Stop closed the connection under the reader
        raise _read_failure(error, url, backend) from None
    if cancel is not None and cancel.is_set():
        return
    if not finished and _streams_a_finish(response):
        if text_seen:
            raise InferenceError.truncated(url, "the server closed the stream before the answer ended")
        detail = "the server closed the stream without an answer (a prompt longer than its context does this)"
        if backend.context_length:  # the prompt was trimmed to it
            raise InferenceError.truncated(url, detail)
        hint = (
            f"Send your message again; if it fails the same way, {CONTEXT_LENGTH_HINT.format(model=backend.model_id)}."
        )
        raise InferenceError.truncated(url, detail, hint)


def _at_most(chunks: Iterator[Chunk], most: int, url: str) -> Iterator[Chunk]:
    """The stream until it has said `most` characters (text, reasoning, tool calls' ids, names and arguments), the
    text that reaches it cut there; then InferenceError.overlong, which ends the answer with what came before."""
    said = 0
    for chunk in chunks:
        if isinstance(chunk, Text | Reasoning):
            size = len(chunk.text)
        elif isinstance(chunk, ToolCallPiece):
            size = len(chunk.id or "") + len(chunk.name or "") + len(chunk.arguments)
        else:
            size = 0
        if said + size > most:
            if isinstance(chunk, Text | Reasoning) and most > said:
                yield type(chunk)(chunk.text[: most - said], chunk.tokens)
            raise InferenceError.overlong(url, f"more than {most:,} characters")
        said += size
        yield chunk


def _read_chunks(events: list[dict[str, Any]], protocol: Protocol, url: str) -> Iterator[Chunk]:
    """What the events of one read say, the text of their tokens in one piece (and their reasoning in another):
    the stages after this one work once per read, not once per token. A special token is never text."""
    kind: type[Text | Reasoning] = Text
    texts: list[str] = []  # of the tokens of `kind` not yet sent
    for event in events:
        if event.get("error"):
            if texts:  # what came before it is kept
                yield kind("".join(texts), len(texts))
            raise InferenceError.in_stream(error_message(event) or "unknown error", url, event.get("error_type"))
        text = protocol.text_only(event) if event is not DONE else None
        if text is not None and (kind is Text or not texts):  # most events: one token's text, and no chunk made
            kind = Text
            if text.strip() not in prompts.SPECIAL_TOKENS:
                texts.append(text)
            continue
        found = (Text(text),) if text is not None else protocol.chunks(event) if event is not DONE else DONE_SAYS
        for chunk in found:
            if isinstance(chunk, Text) and chunk.text.strip() in prompts.SPECIAL_TOKENS:
                continue
            if isinstance(chunk, Text | Reasoning):
                if texts and type(chunk) is not kind:
                    yield kind("".join(texts), len(texts))
                    texts = []
                kind = type(chunk)
                texts.append(chunk.text)
                continue
            if texts:
                yield kind("".join(texts), len(texts))
                texts = []
            yield chunk
    if texts:
        yield kind("".join(texts), len(texts))


def _read_failure(error: Exception, url: str, backend: Backend) -> InferenceError:
    """What went wrong while the answer was being read, in words."""
    if isinstance(error, TimeoutError):
        return InferenceError.timeout(url, backend.read_timeout, "READ_TIMEOUT", reading=True)
    if isinstance(error, ValueError):
        return InferenceError.malformed(url, str(error))
    return InferenceError.truncated(url, "the connection broke before the answer ended")


def _streams_a_finish(response: http_client.Response) -> bool:
    """Event streams say when they are done; a plain JSON body is whole by itself."""
    return "text/event-stream" in response.headers.get("Content-Type", "")


DONE: dict[str, Any] = {}  # the `[DONE]` event, compared by identity
DONE_SAYS = (Finish("stop"),)


def _event_batches(
    response: http_client.Response, cancel: threading.Event | None, max_bytes: int, url: str
) -> Iterator[list[dict[str, Any]]]:
    """The JSON events of an event stream, those of each read together, or of a whole JSON body; an event stream
    longer than `max_bytes` is cut there (InferenceError.overlong)."""
    if "text/event-stream" not in response.headers.get("Content-Type", ""):
        text = response.text()
        try:
            body = json.loads(text)
        except ValueError:
            raise ValueError(text) from None
        for event in body if isinstance(body, list) else [body]:
            if not isinstance(event, dict):
                raise ValueError(text)
        yield body if isinstance(body, list) else [body]
        return
    for batch in sse.batches(_at_most_bytes(_chunks(response), max_bytes, url)):
        if cancel is not None and cancel.is_set():
            return
        events = []
        for event in batch:
            try:
                events.append(_decoded(event.data))
            except ValueError:
                yield events  # what came before it is kept
                raise
        yield events


def _decoded(data: str) -> dict[str, Any]:
    """One event's JSON object, or DONE."""
    try:
        decoded = orjson.loads(data)  # a third of the standard library's time, for an event a token
    except ValueError:  # a lone surrogate, NaN, [DONE]: read as the standard library reads them
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = DONE if data.strip() == "[DONE]" else None
    if not isinstance(decoded, dict):
        raise ValueError(data)
    return decoded


def _at_most_bytes(chunks: Iterator[bytes], most: int, url: str) -> Iterator[bytes]:
    """The body until `most` bytes have come (a server that streams events with next to nothing in them, or
    comments, without end); then InferenceError.overlong."""
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read > most:
            raise InferenceError.overlong(url, f"more than {most:,} bytes")
        yield chunk


def _chunks(response: http_client.Response) -> Iterator[bytes]:
    """The body's bytes as soon as they arrive (iter_content would hold them back), a read's worth at a time. When
    two reads in a row found bytes waiting (a server writing faster than the answer is read), the next waits
    PAUSE_SECONDS, so that it gathers what the server writes meanwhile: every stage after this one works once per
    read, so a flood costs the app less per token, not more; the pause is far below the flush interval, so the tab
    sees no difference, and it gives the other threads (and, under gevent, greenlets) their turn, so the first token
    is sent at once. A reader of a server that writes at its pace waits on its reads and never pauses, even when
    one read finds a token or two waiting because its turn came late on a busy worker: a pause there would send it
    to the back of the hub's queue, behind every other ready greenlet (1,000 chats at 20 tokens/s under gevent:
    each token's delay nearly twice as long)."""
    asked, behind = time.monotonic(), False  # when the read began; the read before found bytes waiting
    for chunk in http_body.reads(response, READ_SIZE):
        found_waiting = time.monotonic() - asked < WAITED_SECONDS and len(chunk) < READ_SIZE // 2
        yield chunk
        if found_waiting and behind:
            time.sleep(PAUSE_SECONDS)
        behind = found_waiting
        asked = time.monotonic()
