"""A fake Hugging Face API: a real HTTP server on 127.0.0.1 that speaks protocols.md.

It serves the text-generation task (`POST /models/<org>/<model>`, TGI's
`/generate_stream`) and OpenAI-compatible chat (`POST /v1/chat/completions`),
streams as the real servers do (TGI's `data:{...}` with no space and no
[DONE]; chat's `data: {...}` ending in `data: [DONE]`), checks the token as
the router does, and answers with the recorded error bodies. Tests queue what
the next request gets with `reply(...)` and read what it received in `requests`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_token_for_tests_0123456789"


@dataclass
class Reply:
    """What the fake sends for one request."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    status: int = 200
    body: Any = None  # an error body (dict or text) when status != 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds between tokens
    first_delay: float = 0.0  # seconds before the first byte
    cut_after: int | None = None  # close the connection after this many tokens
    error_event: dict | None = None  # sent inside the 200 stream after the tokens
    special_end: bool = True  # TGI: end with a special token carrying generated_text
    keepalive: bool = False  # a ": keep-alive" comment line before every event
    page: str | None = None  # a 200 HTML page instead of an answer (a proxy's login page, say)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    json: Any


class FakeHuggingFace:
    """Start with `with FakeHuggingFace() as fake:`; `fake.url` is its base address."""

    def __init__(self) -> None:
        self.replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self.requests: list[Received] = []
        self.require_token = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, **fields: Any) -> None:
        """Queue the reply for the next request; with none queued, the default stream."""
        self.replies.put(Reply(**fields))

    def task_url(self, model_id: str = "google/gemma-7b-it") -> str:
        return f"{self.url}/models/{model_id}"

    def __enter__(self) -> FakeHuggingFace:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Reply:
        try:
            return self.replies.get_nowait()
        except queue.Empty:
            return Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                fake.requests.append(Received(self.path, dict(self.headers), body))
                reply = fake._next()
                if fake.require_token and reply.status == 200:
                    auth = self.headers.get("Authorization")
                    if not auth:
                        return self._send_error(401, {"error": "Authorization header is required"})
                    if auth != f"Bearer {TOKEN}":
                        return self._send_error(401, {"error": "Invalid credentials in Authorization header"})
                if reply.status != 200:
                    return self._send_error(reply.status, reply.body, reply.headers)
                if reply.page is not None:
                    return self._send_error(200, reply.page, {"Content-Type": "text/html"})
                if self.path.endswith("/chat/completions"):
                    return self._stream(reply, self._chat_events(reply, body), "data: ", done=True)
                return self._stream(reply, self._task_events(reply), "data:", done=False)

            def _send_error(self, status: int, body: Any, headers: dict | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                headers = {
                    "Content-Type": "text/plain" if isinstance(body, str) else "application/json",
                    **(headers or {}),
                }
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _task_events(self, reply: Reply) -> list[dict]:
                events = [
                    {
                        "index": i + 1,
                        "token": {"id": 100 + i, "text": text, "logprob": -0.1, "special": False},
                        "generated_text": None,
                        "details": None,
                    }
                    for i, text in enumerate(reply.tokens)
                ]
                if reply.special_end:
                    events.append(
                        {
                            "index": len(events) + 1,
                            "token": {"id": 1, "text": "<end_of_turn>", "logprob": 0.0, "special": True},
                            "generated_text": "".join(reply.tokens),
                            "details": {
                                "finish_reason": "eos_token",
                                "generated_tokens": len(events) + 1,
                                "seed": None,
                            },
                        }
                    )
                return events

            def _chat_events(self, reply: Reply, request: Any) -> list[dict]:
                def chunk(delta: dict, finish: str | None = None) -> dict:
                    return {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": request.get("model", ""),
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }

                events = [chunk({"role": "assistant", "content": None})]
                events += [chunk({"content": text}) for text in reply.tokens]
                events.append(chunk({}, "stop"))
                events.append(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": {"prompt_tokens": 10, "completion_tokens": len(reply.tokens)},
                    }
                )
                return events

            def _stream(self, reply: Reply, events: list[dict], prefix: str, done: bool) -> None:
                time.sleep(reply.first_delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent_tokens = 0
                for event in events:
                    if reply.cut_after is not None and sent_tokens >= reply.cut_after:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # a truncated stream: no end, no [DONE]
                        return
                    if reply.keepalive:
                        self._chunk(": keep-alive\n\n")
                    self._chunk(f"{prefix}{json.dumps(event)}\n\n")
                    sent_tokens += 1
                    time.sleep(reply.delay)
                if reply.error_event:
                    self._chunk(f"{prefix}{json.dumps(reply.error_event)}\n\n")
                if done:
                    self._chunk(f"{prefix}[DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
