"""Relay speed: tokens per second and time to first token through the app's WebSocket, against the backend alone.

Run: .venv/bin/python bench/relay.py [--tokens 4000] [--runs 20] [--rate 0]
The backend (bench/backend.py, TGI's wire format) streams as fast as it can, or at --rate tokens per second;
the app runs under gunicorn (gunicorn.conf.py, 2 gthread workers) on 127.0.0.1. "Alone" reads the same
stream with the app's own client (inference.stream_reply), so the difference is what the app adds:
storage, coalescing, rendering, the socket.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backend import StreamingBackend, app_environment  # noqa: E402
from bench.stats import percentile  # noqa: E402
from chatbot.services.inference import Backend, Parameters, build_request, stream_reply  # noqa: E402
from tests.servers import ANSWER_TEXT, FINISHED, ChatClient, GunicornApp  # noqa: E402

HELLO = [{"role": "user", "content": "Hello"}]


def backend_alone(streaming: StreamingBackend) -> tuple[float, float]:
    """(seconds to the first token, seconds for all) reading the backend directly."""
    backend = Backend(api="text-generation", url=streaming.url, model_id="google/gemma-7b-it", token="bench")
    started = time.perf_counter()
    first = None
    for _ in stream_reply(build_request(backend, Parameters(), HELLO), backend):
        first = first or time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def through_the_app(ws) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(seconds to the first text fragment, seconds to the finished answer) through the socket."""
    started = time.perf_counter()
    ws.send(json.dumps({"action": "send", "message": "Hello"}))
    first = None
    while True:
        frame = ws.recv()
        if first is None and ANSWER_TEXT.search(frame):
            first = time.perf_counter() - started
        if FINISHED.search(frame):
            return first or 0.0, time.perf_counter() - started
        if frame.lstrip().startswith('<div id="notice"'):  # the app said something instead of answering
            raise RuntimeError(f"no answer: {frame}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.0, help="tokens per second; 0: as fast as it can")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, StreamingBackend(options.tokens, options.rate) as backend:
        with GunicornApp(app_environment(folder, backend, MAX_NEW_TOKENS=str(options.tokens))) as app:
            alone = [backend_alone(backend) for _ in range(options.runs)]
            ws = ChatClient(app.url).connect()  # now: an unread socket would miss the server's pings
            relayed = [through_the_app(ws) for _ in range(options.runs)]
            ws.close()
    alone_rate = options.tokens / statistics.median(total for _, total in alone)
    app_rate = options.tokens / statistics.median(total for _, total in relayed)
    extra = [app_first - direct_first for (direct_first, _), (app_first, _) in zip(alone, relayed, strict=True)]
    alone_first = statistics.median(first for first, _ in alone) * 1000
    app_first = statistics.median(first for first, _ in relayed) * 1000
    pace = f"{options.rate:g} tokens/s" if options.rate else "as fast as it can"
    print(f"{options.tokens} tokens ({pace}), {options.runs} runs each (medians)")
    print(f"backend alone : {alone_rate:10,.0f} tokens/s, first token {alone_first:6.1f} ms")
    print(f"through app   : {app_rate:10,.0f} tokens/s, first token {app_first:6.1f} ms")
    print(f"relay ratio   : {app_rate / alone_rate:.2f}")
    p50, p99 = percentile(extra, 0.5) * 1000, percentile(extra, 0.99) * 1000
    print(f"extra time to first token: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
