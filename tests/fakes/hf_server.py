"""A fake Hugging Face API (and the other servers people point the chat at): a real
HTTP server on 127.0.0.1 that speaks docs/protocols.md.

It serves the text-generation task (`POST /models/<org>/<model>`, TGI's `/` and
`/generate_stream`), OpenAI-compatible chat (`/v1/chat/completions`) and
completions (`/v1/completions`), and TGI's `/info` and llama.cpp's `/props`.
Streams come as the real servers send them: the task as `data:{...}` with no
[DONE]; chat in each server's dialect (`DIALECTS`: spacing, [DONE], the first
delta, where usage comes). It checks the token as the router does and answers
with the recorded error bodies. Tests queue what the next request gets with
`reply(...)` and read what it received in `requests`.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_token_for_tests_0123456789"


def _max_new_tokens(body: Any) -> int | None:
    """The most tokens a request lets the answer have: `max_tokens` (OpenAI) or the task's `max_new_tokens`."""
    if not isinstance(body, dict):
        return None
    cap = body.get("max_tokens", (body.get("parameters") or {}).get("max_new_tokens"))
    return cap if isinstance(cap, int) else None


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
    finish_reason: str = "stop"  # "length": the answer stopped at max_new_tokens
    dialect: str = "hf-router"  # how chat and completions streams are written: a key of DIALECTS
    reasoning: list[str] = field(default_factory=list)  # the model's thinking, streamed before the tokens
    reasoning_field: str = "reasoning"  # where: "reasoning", "reasoning_content", "reasoning_text", or "think"
    # chat: tool calls (id, name, arguments) after the tokens, their arguments streamed in pieces of this many
    # characters, the calls' pieces interleaved by index; the last chunk's finish_reason is then "tool_calls"
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    tool_piece: int = 4
    ignores_max_tokens: bool = False  # a hostile (or broken) server: every token sent, whatever max_tokens says
    usage: dict | None = None  # chat and completions: what it says it counted, in place of its own count


@dataclass(frozen=True)
class Dialect:
    """How a server writes an OpenAI-compatible stream."""

    prefix: str  # "data:" or "data: "
    done: bool  # ends with [DONE]
    first_delta: dict  # the first chunk's delta
    usage: str  # "separate": its own chunk with "choices": []; "last": in the finishing chunk; "none"
    provider: str | None = None  # the router names the provider that answered in x-inference-provider


DIALECTS = {
    "hf-router": Dialect("data:", True, {"role": "assistant", "content": None}, "separate", provider="novita"),
    "tgi": Dialect("data:", True, {"role": "assistant", "content": ""}, "last"),
    "text-generation-webui": Dialect("data: ", True, {"role": "assistant", "content": ""}, "last"),
    "ollama": Dialect("data: ", True, {"role": "assistant"}, "none"),
    "vllm": Dialect("data: ", True, {"role": "assistant", "content": ""}, "separate"),
}


def router_model(
    model_id: str, *offers: tuple[str, str, int, float, float], images: bool = False, thinks: bool = False
) -> dict:
    """One model as the router's GET /v1/models lists it; each offer is (provider, status, context, in, out);
    `thinks`: its providers say it reasons."""
    return {
        "id": model_id,
        "object": "model",
        "created": 1776837885,
        "owned_by": model_id.split("/")[0],
        "architecture": {"input_modalities": ["text", "image"] if images else ["text"], "output_modalities": ["text"]},
        "providers": [
            {
                "provider": provider,
                "status": status,
                "context_length": context,
                "pricing": {"input": price_in, "output": price_out},
                "supports_tools": True,
                "supports_structured_output": False,
                **({"supports_reasoning": True} if thinks else {}),
            }
            for provider, status, context, price_in, price_out in offers
        ],
    }


# A catalogue as the router serves it: live models, one whose only provider reports an error, none of the notes'.
ROUTER_MODELS = [
    router_model(
        "meta-llama/Llama-3.1-8B-Instruct", ("novita", "live", 16384, 0.02, 0.05), ("groq", "live", 131072, 0.05, 0.08)
    ),
    router_model("google/gemma-3-27b-it", ("nebius", "live", 131072, 0.1, 0.3), images=True),
    router_model("google/gemma-2-9b-it", ("featherless-ai", "error", 8192, 0.1, 0.1)),
    router_model("mistralai/Mistral-7B-Instruct-v0.3", ("together", "live", 32768, 0.2, 0.2)),
    router_model("openai/gpt-oss-20b", ("cerebras", "live", 131072, 0.25, 0.69), thinks=True),
]


def llama_cpp_python_refusal(window: int, prompt: int, max_tokens: int) -> dict | None:
    """llama-cpp-python's server (llama_cpp/server/errors.py): only a prompt that fills the window is refused (a
    shorter one gets fewer new tokens), with its chat words."""
    if prompt < window:
        return None
    message = (
        f"This model's maximum context length is {window} tokens. However, you requested {prompt + max_tokens} tokens"
        f" ({prompt} in the messages, {max_tokens} in the completion). Please reduce the length of the messages or"
        " completion."
    )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def vllm_refusal(window: int, prompt: int, max_tokens: int) -> dict | None:
    """vLLM's OpenAI server: a prompt that fills the window, or one that leaves no room for max_tokens."""
    if prompt >= window:
        message = (
            f"This model's maximum context length is {window} tokens. However, your request has {prompt} input tokens."
            " Please reduce the length of the input messages."
        )
    elif prompt + max_tokens > window:
        message = (
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context length"
            f" is {window} tokens and your request has {prompt} input tokens ({max_tokens} > {window} - {prompt})."
            f" (parameter=max_tokens, value={max_tokens})"
        )
    else:
        return None
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def unnumbered_refusal(window: int, prompt: int, max_tokens: int) -> dict | None:
    """A server that says the prompt is too long but not by how much."""
    return {"error": {"message": "The prompt is too long for this model."}} if prompt + max_tokens > window else None


CONTEXT_REFUSALS = {
    "llama-cpp-python": llama_cpp_python_refusal,
    "vllm": vllm_refusal,
    "unnumbered": unnumbered_refusal,
}


def _tool_call_pieces(calls: list[tuple[str, str, str]], size: int) -> list[dict]:
    """`delta.tool_calls` entries as servers stream them: a call's first piece has its id, type and name with no
    arguments, later pieces its index and `size` characters of arguments; the calls' pieces take turns."""
    queues = []
    for index, (call_id, name, arguments) in enumerate(calls):
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        rest = [
            {"index": index, "function": {"arguments": arguments[at : at + size]}}
            for at in range(0, len(arguments), size)
        ]
        queues.append([first, *rest])
    pieces = []
    while any(queues):
        pieces += [queue.pop(0) for queue in queues if queue]
    return pieces


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.perf_counter)  # when it had arrived whole (bench/tool_round.py)
    peer: int = 0  # the client's port: the same for requests on one kept-alive connection


class FakeHuggingFace:
    """Start with `with FakeHuggingFace() as fake:`; `fake.url` is its base address."""

    def __init__(self) -> None:
        self.replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self.requests: list[Received] = []  # what was POSTed: the requests for answers
        self.streams_ended: list[float] = []  # when each stream's last byte was written (time.perf_counter)
        self.lookups: list[Received] = []  # what was asked with GET: /info, /props, Hub files
        self.require_token = True
        self.unauthorized_body: Any = None  # None: the HF bodies; else what a local server says (a 401)
        self.info: dict | None = None  # TGI's GET /info, when set
        self.props: dict | None = None  # llama.cpp's GET /props, when set
        self.hub: dict[str, dict] = {}  # Hub files by path, e.g. /org/model/resolve/main/tokenizer_config.json
        self.catalogue: list[dict] | None = None  # GET /v1/models: the router's shape (ROUTER_MODELS) when set
        self.catalogue_drip = 0.0  # when set, GET /v1/models sends its answer a byte at a time, this many s apart
        self.context_window: int | None = None  # when set, a longer chat or completions prompt gets a 400 ...
        self.window_words = "llama-cpp-python"  # ... as this server words it: a key of CONTEXT_REFUSALS
        self.refuses_tools = False  # a request with `tools` gets llama.cpp's 400 (a server started without --jinja)
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

    def context_refusal(self, path: str, body: Any) -> dict | None:
        """The 400 a server with `context_window` sends for a prompt too long for it, in its own words; None
        when it fits. Tokens are counted as a quarter of the characters and four a message."""
        if self.context_window is None or not path.endswith("completions") or not isinstance(body, dict):
            return None
        messages = body.get("messages") or [{"content": body.get("prompt") or ""}]
        prompt = sum(len(json.dumps(message.get("content"))) // 4 + 4 for message in messages)
        return CONTEXT_REFUSALS[self.window_words](self.context_window, prompt, body.get("max_tokens") or 16)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.lookups.append(Received(self.path, dict(self.headers), None))
                models = {"object": "list", "data": fake.catalogue} if fake.catalogue is not None else None
                document = {"/info": fake.info, "/props": fake.props, "/v1/models": models, **fake.hub}.get(self.path)
                if document is None:
                    return self._send_error(404, "Not Found")
                if self.path == "/v1/models" and fake.catalogue_drip:
                    return self._drip(json.dumps(document).encode(), fake.catalogue_drip)
                self._send_error(200, document)

            def _drip(self, data: bytes, pause: float) -> None:
                """A server that sends its answer one byte at a time, until the client hangs up."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for index in range(len(data)):
                        self.wfile.write(data[index : index + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up on it
                    self.close_connection = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                if self.path == "/tokenize":  # a server without one, as the Hugging Face API; llama.cpp's is real
                    fake.lookups.append(Received(self.path, dict(self.headers), body))
                    return self._send_error(404, "Not Found")
                fake.requests.append(Received(self.path, dict(self.headers), body, peer=self.client_address[1]))
                if (refusal := fake.context_refusal(self.path, body)) is not None:
                    return self._send_error(400, refusal)
                if fake.refuses_tools and isinstance(body, dict) and body.get("tools"):
                    refusal = {
                        "code": 400,
                        "message": "tools param requires --jinja flag",
                        "type": "invalid_request_error",
                    }
                    return self._send_error(400, {"error": refusal})
                reply = fake._next()
                if fake.require_token and reply.status == 200:
                    auth = self.headers.get("Authorization")
                    if auth != f"Bearer {TOKEN}" and fake.unauthorized_body is not None:
                        return self._send_error(401, fake.unauthorized_body)
                    if not auth:
                        return self._send_error(401, {"error": "Authorization header is required"})
                    if auth != f"Bearer {TOKEN}":
                        return self._send_error(401, {"error": "Invalid credentials in Authorization header"})
                if reply.status != 200:
                    return self._send_error(reply.status, reply.body, reply.headers)
                if reply.page is not None:
                    return self._send_error(200, reply.page, {"Content-Type": "text/html"})
                cap = None if reply.ignores_max_tokens else _max_new_tokens(body)
                if cap is not None and len(reply.tokens) > cap:  # as servers do
                    reply = dataclasses.replace(reply, tokens=reply.tokens[:cap], finish_reason="length")
                dialect = DIALECTS[reply.dialect]
                if self.path.endswith("/chat/completions"):
                    return self._stream(reply, self._openai_events(reply, body, dialect, chat=True), dialect)
                if self.path.endswith("/completions"):
                    return self._stream(reply, self._openai_events(reply, body, dialect, chat=False), dialect)
                return self._stream(reply, self._task_events(reply), Dialect("data:", False, {}, "none"))

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
                if reply.reasoning:  # TGI has no reasoning field: the model writes <think> in its text
                    reply = dataclasses.replace(reply, tokens=["<think>", *reply.reasoning, "</think>", *reply.tokens])
                events = [
                    {
                        "index": i + 1,
                        "token": {"id": 100 + i, "text": text, "logprob": -0.1, "special": False},
                        "generated_text": None,
                        "details": None,
                    }
                    for i, text in enumerate(reply.tokens)
                ]
                if reply.special_end and reply.finish_reason == "length" and events:  # no end token: the last says
                    events[-1].update(
                        generated_text="".join(reply.tokens),
                        details={"finish_reason": "length", "generated_tokens": len(events), "seed": None},
                    )
                elif reply.special_end:
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

            def _openai_events(self, reply: Reply, request: Any, dialect: Dialect, chat: bool) -> list[dict]:
                kind = "chat.completion.chunk" if chat else "text_completion"
                usage = reply.usage or {
                    "prompt_tokens": 10,
                    "completion_tokens": len(reply.tokens),
                    "total_tokens": 10 + len(reply.tokens),
                }

                def chunk(text: str | None, finish: str | None = None, first: bool = False) -> dict:
                    if chat:
                        delta = dict(dialect.first_delta) if first else ({"content": text} if text is not None else {})
                        choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    else:
                        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
                    return {
                        "id": "cmpl-1",
                        "object": kind,
                        "created": 0,
                        "model": request.get("model", ""),
                        "choices": [choice],
                    }

                events = [chunk(None, first=True)] if chat else []
                if reply.reasoning_field == "think" or not chat:
                    thinking = ["<think>", *reply.reasoning, "</think>"] if reply.reasoning else []
                    events += [chunk(text) for text in thinking]
                else:
                    for text in reply.reasoning:
                        events.append(chunk(""))
                        events[-1]["choices"][0]["delta"] = {"content": "", reply.reasoning_field: text}
                events += [chunk(text) for text in reply.tokens]
                for piece in _tool_call_pieces(reply.tool_calls, reply.tool_piece) if chat else []:
                    events.append(chunk(None))
                    events[-1]["choices"][0]["delta"] = {"content": None, "tool_calls": [piece]}
                events.append(chunk(None, "tool_calls" if reply.tool_calls and chat else reply.finish_reason))
                if dialect.usage == "last":
                    events[-1]["usage"] = usage
                elif dialect.usage == "separate":
                    events.append({"id": "cmpl-1", "object": kind, "choices": [], "usage": usage})
                return events

            def _stream(self, reply: Reply, events: list[dict], dialect: Dialect) -> None:
                time.sleep(reply.first_delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                if dialect.provider:
                    self.send_header("x-inference-provider", dialect.provider)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                sent_tokens = 0
                for event in events:
                    if reply.cut_after is not None and sent_tokens >= reply.cut_after:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # a truncated stream: no end, no [DONE]
                        return
                    if reply.keepalive:
                        self._chunk(": keep-alive\n\n")
                    self._chunk(f"{dialect.prefix}{json.dumps(event)}\n\n")
                    sent_tokens += 1
                    time.sleep(reply.delay)
                if reply.error_event:
                    self._chunk(f"{dialect.prefix}{json.dumps(reply.error_event)}\n\n")
                if dialect.done:
                    self._chunk(f"{dialect.prefix}[DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                fake.streams_ended.append(time.perf_counter())

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
