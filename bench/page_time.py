"""How long the server takes to build a conversation's page, for 10 and for 2,000 messages.

Run: .venv/bin/python bench/page_time.py [--stores sqlite postgres redis memory] [--opcodes]
(bench/stores.py: where each is). --opcodes also counts the Python opcodes one GET runs: on a busy machine the
times move by half, that count not at all.
Pages are built from stored, already-rendered HTML, so the time should grow
with the page's size only, never with re-rendering markdown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stores import KINDS, store_url  # noqa: E402
from chatbot.chat.rendering import render_markdown  # noqa: E402
from chatbot.stores.conversations import Message, new_id  # noqa: E402
from chatbot.stores.postgres import PostgresStore  # noqa: E402
from chatbot.web import create_app  # noqa: E402

ANSWER = "Here is a list:\n\n- one\n- two\n\n```python\nprint('hello')\n```\n\nAnd a **bold** ending."


def page_time(messages: int, kind: str = "sqlite", runs: int = 20, opcodes: bool = False) -> tuple[float, int, int]:
    """Median milliseconds to build the page on a store of that kind, its size in bytes and (asked) the opcodes."""
    with store_url(kind) as url:
        settings = {"SECRET_KEY": "bench", "CHAT_STORE_URL": url, "REDIS_KEEPS_NOTHING": "accept"}
        app = create_app(settings)
        client = app.test_client()
        url = client.get("/").location
        store = app.extensions["chat_store"]
        with client.session_transaction() as session:
            owner = session["owner"]
        conversation = store.get_conversation(owner, url.rsplit("/", 1)[-1])
        html = str(render_markdown(ANSWER))
        previous = None  # each message follows the one before: one branch of them all
        for index in range(messages):
            if index % 2 == 0:
                message = Message(new_id(), conversation.id, "user", f"Question {index}?", parent_id=previous)
            else:
                meta = {"model": "m", "tokens": 40, "tokens_per_second": 20.0, "seconds": 2}
                message = Message(new_id(), conversation.id, "assistant", ANSWER, html=html, meta=meta)
                message.parent_id = previous
            previous = store.add_message(message).id
        client.get(url)  # warm the template cache
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        counted = opcodes_of(lambda: client.get(url)) if opcodes else 0
        if isinstance(store, PostgresStore):
            store.close()  # before its database is dropped
        return statistics.median(times), len(response.data), counted


def opcodes_of(action: Callable[[], object]) -> int:
    """How many Python opcodes `action` runs (sys.settrace; C code, such as str.join, counts as one call)."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        frame.f_trace_opcodes = True
        count += event == "opcode"
        return trace

    sys.settrace(trace)
    try:
        action()
    finally:
        sys.settrace(None)
    return count


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", nargs="+", default=["sqlite"], choices=KINDS)
    parser.add_argument("--opcodes", action="store_true", help="count the Python opcodes of one GET too")
    arguments = parser.parse_args()
    for kind in arguments.stores:
        for count in (10, 2000):
            milliseconds, size, opcodes = page_time(count, kind, opcodes=arguments.opcodes)
            shown = f"{size / 1024:,.0f} KiB" + (f", {opcodes:,} opcodes" if arguments.opcodes else "")
            print(f"{kind:>8} {count:>5} messages: {milliseconds:7.1f} ms median of 20 ({shown})")
