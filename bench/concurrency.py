"""Concurrency: how many chats stream at once through one machine with every token delivered, the delay each
token picks up on the way through the app, and the memory an open idle socket costs.

Run (each line one result, appended to bench/concurrency.jsonl for bench/plot.py):
  .venv/bin/python bench/concurrency.py --worker-class gevent --streams 100 250 500 1000 --rate 20 --tokens 200
  .venv/bin/python bench/concurrency.py --worker-class gthread --idle 500
  .venv/bin/python bench/concurrency.py --store postgres --streams 500   (or redis: an empty store of its own)
  .venv/bin/python bench/concurrency.py --worker-class gthread --threads 64 --idle 300   (the defaults: the caps)

The backend (bench/backend.py, its own process) writes each token's send time into its text; the client
(asyncio, one process, one session and one conversation per chat) notes when each token arrives, so a
token's delay is everything between the backend and the browser: the app's parsing, coalescing (up to
40 ms by design), saving and the socket. The app runs under gunicorn with 2 workers (one per core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backend import StreamingBackend, app_environment  # noqa: E402
from bench.stats import percentile  # noqa: E402
from bench.stores import store_url  # noqa: E402
from tests.servers import ANSWER_TEXT, FINISHED, ChatClient, GunicornApp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "concurrency.jsonl"
STAMP = re.compile(r"\d{16}")
LOG = Path(tempfile.gettempdir()) / "bench-gunicorn.log"
STALL_SECONDS = 60  # a chat that hears nothing for this long is not held


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (gunicorn's workers) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid, *children(pid)]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def resident_kib(pids: list[int]) -> int:
    """Resident memory of the processes, in KiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Chat:
    """One browser's chat: its own session and conversation, and what arrived of its answer."""

    def __init__(self, client: ChatClient) -> None:
        self.url = client.socket_url
        self.page_url = client.page_url
        self.cookies = client.http.cookies.get_dict()
        self.origin = client.base_url
        self.cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
        self.delays: list[float] = []
        self.seen: set[str] = set()  # the tokens arrived (an open block is sent again as it grows)
        self.status = "not finished"
        self.retries = 0  # times a full worker refused it before one held it
        self.first_token: float | None = None  # seconds from its message to the first text of the answer

    def open(self, again: bool = False):  # type: ignore[no-untyped-def]
        return connect(
            self.url + ("?again=1" if again else ""),
            origin=self.origin,
            additional_headers={"Cookie": self.cookie},
            open_timeout=STALL_SECONDS,
            ping_interval=None,
            max_size=None,
        )

    async def ask(self, start_after: float) -> None:
        """Send a message as the page does at once; a socket refused by a full worker (closed with 4002) tries
        again as chat.js does, after 1-2 s, then twice as long each time, and sends once it is held."""
        await asyncio.sleep(start_after)
        try:
            for attempt in range(8):
                if await self.answered(again=attempt > 0):
                    return
                self.retries += 1
                most = min(2**attempt, 60)
                await asyncio.sleep(most / 2 + random.random() * most / 2)
            self.status = "refused 8 times by a full worker"
        except Exception as error:  # counted as a chat not held
            self.status = f"{type(error).__name__}: {error}"[:120]

    async def answered(self, again: bool) -> bool:
        """Ask on a new socket and read the answer to its end; False when a full worker refused the socket."""
        async with self.open(again) as ws:
            sent = time.monotonic()
            await ws.send(json.dumps({"action": "send", "message": "Hello"}))
            while True:
                frame = await asyncio.wait_for(ws.recv(), STALL_SECONDS)
                arrived = time.time_ns() // 1000
                if "could not connect" in frame:
                    return False
                if ANSWER_TEXT.search(frame):
                    if self.first_token is None:
                        self.first_token = time.monotonic() - sent
                    new = set(STAMP.findall(frame)) - self.seen
                    self.delays += [(arrived - int(stamp)) / 1000 for stamp in new]
                    self.seen |= new
                if finished := FINISHED.search(frame):
                    self.status = finished.group(2)
                    return True


def make_chats(app_url: str, count: int) -> list[Chat]:
    """`count` browsers, each with a session and a new conversation (made before the clock starts)."""
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda _: Chat(ChatClient(app_url)), range(count)))


def settings(options: argparse.Namespace, store: str) -> dict[str, str]:
    """The app's settings for this run: its worker class and store."""
    return {
        "WORKER_CLASS": options.worker_class,
        "GUNICORN_THREADS": str(options.threads),
        "WORKER_CONNECTIONS": str(options.connections),
        "CHAT_STORE_URL": store,
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_streams(app: GunicornApp, backend: StreamingBackend, count: int, options: argparse.Namespace) -> dict:
    chats = make_chats(app.url, count)
    started = time.monotonic()
    before = [cpu_seconds(app.process.pid), cpu_seconds(backend.process.pid), own_cpu_seconds()]

    async def all_chats() -> None:
        await asyncio.gather(*(chat.ask(options.ramp * i / count) for i, chat in enumerate(chats)))

    asyncio.run(all_chats())
    wall = time.monotonic() - started
    after = [cpu_seconds(app.process.pid), cpu_seconds(backend.process.pid), own_cpu_seconds()]
    spent = (round(100 * (end - begin) / wall) for begin, end in zip(before, after, strict=True))
    app_cpu, backend_cpu, client_cpu = spent
    delays = [delay for chat in chats for delay in chat.delays]
    held = sum(chat.status == "done" and len(chat.delays) == options.tokens for chat in chats)
    firsts = [chat.first_token for chat in chats if chat.first_token is not None]
    failures = sorted({chat.status for chat in chats if chat.status != "done"})
    return {
        "streams": count,
        "held": held,
        "retries": sum(chat.retries for chat in chats),
        "tokens_delivered": len(delays),
        "tokens_expected": count * options.tokens,
        "delay_p50_ms": round(percentile(delays, 0.5), 1),
        "delay_p99_ms": round(percentile(delays, 0.99), 1),
        "delay_max_ms": round(max(delays, default=float("nan")), 1),
        "first_token_p50_p99_ms": [round(percentile(firsts, q) * 1000, 1) for q in (0.5, 0.99)],
        "tokens_per_second": round(len(delays) / wall),
        "wall_seconds": round(wall, 1),
        "app_cpu_percent": app_cpu,  # of 200 (2 cores)
        "backend_cpu_percent": backend_cpu,
        "client_cpu_percent": client_cpu,
        "failures": failures[:3],
    }


def run_idle(app: GunicornApp, count: int) -> dict:
    """Open `count` idle sockets (each its own session): how many the app holds, what they cost in memory, and how
    fast /healthz and a page answer while they are open (the sockets beyond the cap are refused and closed)."""
    chats = make_chats(app.url, count)
    workers = children(app.process.pid)
    before = resident_kib(workers)

    async def hold_open() -> tuple[int, int, list[float], list[float]]:
        sockets = await asyncio.gather(*(chat.open() for chat in chats))
        await asyncio.sleep(3)
        after = resident_kib(workers)
        held = sum(ws.close_code is None for ws in sockets)
        health = await asyncio.to_thread(response_times, app.url + "/healthz")
        page = await asyncio.to_thread(response_times, chats[0].page_url, chats[0].cookies)
        await asyncio.gather(*(ws.close() for ws in sockets))
        return after, held, health, page

    after, held, health, page = asyncio.run(hold_open())
    return {
        "idle_sockets": count,
        "held": held,
        "refused": count - held,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_socket": round((after - before) / max(held, 1), 1),
        "healthz_ms_p50_p99": [round(percentile(health, q), 1) for q in (0.5, 0.99)],
        "page_ms_p50_p99": [round(percentile(page, q), 1) for q in (0.5, 0.99)],
    }


def response_times(url: str, cookies: dict | None = None, runs: int = 50) -> list[float]:
    """Milliseconds for each of `runs` GETs of `url`, one after another (10 s at most each)."""
    times = []
    with requests.Session() as http:
        for _ in range(runs):
            started = time.perf_counter()
            http.get(url, cookies=cookies, timeout=10).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker-class", choices=["gthread", "gevent"], default="gevent")
    parser.add_argument("--store", choices=["sqlite", "postgres", "redis"], default="sqlite")
    parser.add_argument("--streams", type=int, nargs="*", default=[100])
    parser.add_argument("--idle", type=int, default=0, help="open this many idle sockets and measure memory instead")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per answer; 0: as fast as it can")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the chats start")
    parser.add_argument("--threads", type=int, default=600, help="gthread: threads per worker (a socket holds one)")
    parser.add_argument("--connections", type=int, default=4000, help="gevent: connections per worker")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the file each result line is appended to")
    parser.add_argument("--app-core", type=int, help="the app alone on this core; the backend and client on the others")
    options = parser.parse_args()
    if options.app_core is not None:  # the backend and gunicorn inherit this; gunicorn is moved once it runs
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {options.app_core})
    with (
        tempfile.TemporaryDirectory() as folder,
        store_url(options.store) as store,
        StreamingBackend(options.tokens, options.rate) as backend,
    ):
        LOG.unlink(missing_ok=True)
        with GunicornApp(app_environment(folder, backend, **settings(options, store)), workers=2, log=LOG) as app:
            setting = {"worker_class": options.worker_class, "store": options.store}
            if options.app_core is not None:
                for pid in (app.process.pid, *children(app.process.pid)):
                    os.sched_setaffinity(pid, {options.app_core})
                setting["app_cores"] = f"core {options.app_core} alone"
            print(f"gunicorn's log: {LOG}")
            if options.idle:
                results = [{**setting, **run_idle(app, options.idle)}]
            else:
                setting |= {"rate": options.rate, "tokens": options.tokens}
                results = [{**setting, **run_streams(app, backend, count, options)} for count in options.streams]
    with options.results.open("a") as out:
        for result in results:
            print(json.dumps(result))
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
