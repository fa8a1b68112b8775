"""Relay speed: one answer through the app's WebSocket against the backend read alone, and what history costs.

Run: .venv/bin/python bench/relay.py [--tokens 4000] [--runs 9] [--rate 0] [--worker-class gthread|gevent]
     .venv/bin/python bench/relay.py --reuse 8 [--unnamed]   (one conversation, 8 answers in a row: first token
     by answer; --unnamed: each message without the `after` the page sends, that says what the tab shows)

The backend (bench/backend.py, TGI's wire format) streams as fast as it can, or at --rate tokens per second;
the app runs under gunicorn (gunicorn.conf.py, 2 workers of --worker-class) on 127.0.0.1 with SQLite. "Alone"
reads the same stream with a plain socket that counts the events as they arrive (no code of the app), so the
difference is all the app adds: its HTTP client, parsing, coalescing, storage, rendering, the socket. Runs
alternate, one alone then one through the app, each in a new chat, so a machine shared with other work slows both
alike; the ratio is of the medians. The app's CPU per token is its workers' user + system time (/proc) over all runs,
the backend's its own: with fewer free cores than the two need, the ratio is how they share them, not which is slower.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backend import StreamingBackend, app_environment  # noqa: E402
from bench.concurrency import cpu_seconds  # noqa: E402
from bench.stats import percentile  # noqa: E402
from tests.servers import ANSWER_TEXT, FINISHED, ChatClient, GunicornApp  # noqa: E402

ALONE_PAUSE = 0.0005  # seconds between the plain reader's reads (see backend_alone)
WARM_UP = 6  # answers before the runs: the kernel hands each chat to either worker, so with 2 both have answered
# once but for 3 % of runs (with 2 warm-up answers, 25 %: a worker's first answer, 20-45 ms later, was a run's p99)


def backend_alone(url: str) -> tuple[float, float, int]:
    """(seconds to the first event, seconds for all, events) reading the backend with a plain socket: the first
    event as soon as it comes, then in bulk, a read every ALONE_PAUSE. The backend is fastest read so: 4,000 tokens
    in 34.5 ms, against 55 ms by a reader that wakes for every event it writes (its CPU per token 12-14 µs against
    8), 35 ms with a read every 1 ms, 36.5 every 2 ms, 46 every 4 ms (its writes wait for room); read one event at a
    time, it was slower than through the app, which reads in bulk."""
    address = urlsplit(url)
    body = json.dumps({"inputs": "Hello", "parameters": {}, "stream": True}).encode()
    head = (
        f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    first = None
    events = 0
    tail = b""  # the last read's end: a "data:" cut between two reads is counted with the second
    with socket.create_connection((address.hostname, address.port)) as stream:
        stream.sendall(head + body)
        while read := stream.recv(65536):
            seen = tail + read
            events += seen.count(b"data:")
            tail = seen[-4:]  # too short to hold a whole one: none is counted twice
            if first is None and events:
                first = time.perf_counter() - started
            elif first is not None:
                time.sleep(ALONE_PAUSE)
    return first or 0.0, time.perf_counter() - started, events - 1  # the last event is the special end token


def through_the_app(ws, workers: int, after: str = "") -> tuple[float, float, float, str]:  # type: ignore[no-untyped-def]
    """(seconds to the first text fragment, seconds to the finished answer, CPU seconds of the app's workers, the
    answer's id), asked as the browser asks: after `after`, the last message the tab shows."""
    cpu = cpu_seconds(workers)
    started = time.perf_counter()
    ws.send(json.dumps({"action": "send", "message": "Hello", "after": after}))
    first = None
    while True:
        frame = ws.recv()
        if first is None and ANSWER_TEXT.search(frame):
            first = time.perf_counter() - started
        if finished := FINISHED.search(frame):
            return first or 0.0, time.perf_counter() - started, cpu_seconds(workers) - cpu, finished.group(1)
        if frame.lstrip().startswith('<div id="notice"'):  # the app said something instead of answering
            raise RuntimeError(f"no answer: {frame}")


def in_a_new_chat(app: GunicornApp) -> tuple[float, float, float]:
    client = ChatClient(app.url)
    ws = client.connect()  # made before the clock starts
    try:
        return through_the_app(ws, app.process.pid)[:3]
    finally:
        ws.close()


def compare(app: GunicornApp, backend: StreamingBackend, options: argparse.Namespace) -> None:
    alone, relayed = [], []
    for _ in range(WARM_UP):  # each worker's first answer asks the backend for /info and the Hub for a template
        in_a_new_chat(app)
    backend_cpu = []  # the backend's CPU seconds for one answer read alone, and one read by the app
    for _ in range(options.runs):
        cpu = cpu_seconds(backend.process.pid)
        alone.append(backend_alone(backend.url))
        middle = cpu_seconds(backend.process.pid)
        relayed.append(in_a_new_chat(app))
        backend_cpu.append((middle - cpu, cpu_seconds(backend.process.pid) - middle))
    counted = {events for _, _, events in alone}
    assert counted == {options.tokens}, f"the plain reader counted {counted} tokens, not {options.tokens}"
    alone_rate = options.tokens / statistics.median(total for _, total, _ in alone)
    app_rate = options.tokens / statistics.median(total for _, total, _ in relayed)
    ratios = [a_total / r_total for (_, a_total, _), (_, r_total, _) in zip(alone, relayed, strict=True)]
    extra = [app_first - direct_first for (direct_first, _, _), (app_first, _, _) in zip(alone, relayed, strict=True)]
    alone_first = statistics.median(first for first, _, _ in alone) * 1000
    app_first = statistics.median(first for first, _, _ in relayed) * 1000
    cpu = sum(cpu for _, _, cpu in relayed) / (options.tokens * options.runs) * 1e6  # /proc counts 10 ms ticks
    pace = f"{options.rate:g} tokens/s" if options.rate else "as fast as it can"
    print(f"{options.tokens} tokens ({pace}), {options.worker_class}, {options.runs} runs each (medians)")
    print(f"backend alone : {alone_rate:10,.0f} tokens/s, first token {alone_first:6.1f} ms")
    print(f"through app   : {app_rate:10,.0f} tokens/s, first token {app_first:6.1f} ms")
    print(f"relay ratio   : {app_rate / alone_rate:.2f} (of medians); per run, median {statistics.median(ratios):.2f}")
    p50, p99 = percentile(extra, 0.5) * 1000, percentile(extra, 0.99) * 1000
    print(f"extra time to first token: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"app CPU per token: {cpu:.2f} µs (its workers, user + system, over all runs)")
    served = [sum(each) / (options.tokens * options.runs) * 1e6 for each in zip(*backend_cpu, strict=True)]
    print(f"backend CPU per token: {served[0]:.2f} µs read alone, {served[1]:.2f} µs read by the app")


def reuse(app: GunicornApp, answers: int, tokens: int, unnamed: bool) -> None:
    """One conversation, `answers` answers in a row: does the first token come later as the history grows? Each
    message names the answer before it as what the tab shows, as the page does, unless `unnamed`."""
    client = ChatClient(app.url)
    ws = client.connect()
    print(f"one conversation, {answers} answers of {tokens} tokens in a row{', unnamed' if unnamed else ''}")
    print("answer  first token ms  total ms  app CPU µs/token")
    after = ""
    for index in range(1, answers + 1):
        first, total, cpu, after = through_the_app(ws, app.process.pid, "" if unnamed else after)
        print(f"{index:6}  {first * 1000:14.1f}  {total * 1000:8.0f}  {cpu / tokens * 1e6:16.1f}")
    ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--rate", type=float, default=0.0, help="tokens per second; 0: as fast as it can")
    parser.add_argument("--worker-class", choices=["gthread", "gevent"], default="gthread")
    parser.add_argument("--reuse", type=int, default=0, help="answers in one conversation (instead of comparing)")
    parser.add_argument("--unnamed", action="store_true", help="--reuse: messages that do not say what the tab shows")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, StreamingBackend(options.tokens, options.rate) as backend:
        environment = app_environment(
            folder, backend, MAX_NEW_TOKENS=str(options.tokens), WORKER_CLASS=options.worker_class
        )
        with GunicornApp(environment) as app:
            if options.reuse:
                reuse(app, options.reuse, options.tokens, options.unnamed)
            else:
                compare(app, backend, options)


if __name__ == "__main__":
    main()
