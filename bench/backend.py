"""A streaming backend for the benchmarks: TGI's text-generation stream (docs/protocols.md), in its own process.

Each answer is `tokens` tokens, as fast as the server can write them (rate 0) or at `rate` tokens per
second from the moment the request arrived. Each token's text is the time it was written, in
microseconds, so a client can tell how long every token took to reach it. asyncio, so a thousand
answers at once cost one process a thousand coroutines, not threads; any GET is a 404 (no /info).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import time

from chatbot.local_model.server import free_port
from tests.servers import UNLIMITED


def _event(index: int, text: str, special: bool = False) -> bytes:
    token = {"id": index, "text": text, "logprob": 0.0, "special": special}
    details = {"finish_reason": "eos_token", "generated_tokens": index, "seed": None} if special else None
    event = {"index": index, "token": token, "generated_text": "" if special else None, "details": details}
    return b"data:" + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int, rate: float) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
        await reader.readexactly(length)
        if not lines[0].startswith("POST "):
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        started = time.monotonic()
        for index in range(tokens):
            if rate:
                await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            writer.write(_event(index, f" {time.time_ns() // 1000}"))
            await writer.drain()
            if not rate:
                await asyncio.sleep(0)  # as fast as it can, but fair to the other answers
        writer.write(_event(tokens, "<end_of_turn>", special=True))
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _serve(port: int, tokens: int, rate: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(
            lambda reader, writer: _answer(reader, writer, tokens, rate), "127.0.0.1", port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class StreamingBackend:
    """`with StreamingBackend(tokens=500, rate=20) as backend:` then point the app at `backend.url`."""

    def __init__(self, tokens: int, rate: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/models/google/gemma-7b-it"
        self.process = multiprocessing.Process(target=_serve, args=(self.port, tokens, rate), daemon=True)

    def __enter__(self) -> StreamingBackend:
        self.process.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the bench backend did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(5)


def app_environment(folder: str, backend: StreamingBackend, **settings: str) -> dict[str, str]:
    """The app's environment for a benchmark: this backend, a SQLite store in `folder`, no limits per session or
    address, and `settings` on top. A Redis store may keep nothing on disk (a benchmark's data is thrown away)."""
    return {
        **UNLIMITED,
        "REDIS_KEEPS_NOTHING": "accept",
        "MODEL_TITLES": "false",  # one request per answer: what is measured
        "SECRET_KEY": "bench",
        "CHAT_STORE_URL": f"sqlite:///{folder}/bench.sqlite3",
        "API_URL": backend.url,
        "HF_API_TOKEN": "bench",
        "HF_ENDPOINT": backend.url.split("/models")[0],  # no Hub lookups leave the machine
        "CHAT_HUB_CACHE": folder,
        "READ_TIMEOUT": "300",
        **settings,
    }
