"""What saving a part of an answer costs when the answer is 10 parts long and when it is 20,000 parts long, on
each store, and what a tab following the answer pays to read its newest part.

Run: .venv/bin/python bench/answer_parts.py [--stores sqlite postgres redis memory]
Each store is made empty for it (bench/stores.py says where).
The two answers are saved in turns, 200 parts at a time, so a busy moment of the machine slows both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stores import KINDS, store_url  # noqa: E402
from chatbot.stores import open_store  # noqa: E402
from chatbot.stores.conversations import Message, Store, new_id  # noqa: E402
from chatbot.stores.postgres import PostgresStore  # noqa: E402

PART = "x" * 100  # about what 0.25 s of an answer brings
LONG = 20_000
SHORT = 10
ROUNDS, BATCH = 5, 200


@contextlib.contextmanager
def opened(kind: str) -> Iterator[Store]:
    with store_url(kind) as url:
        store = open_store(url, "/unused")
        try:
            yield store
        finally:
            if isinstance(store, PostgresStore):
                store.close()


def measure(store: Store) -> dict[str, float]:
    """Median µs per saved part and per follower's read, for the short and the long answer."""
    conversation = store.create_conversation("bench")
    answers = {
        size: store.add_message(Message(new_id(), conversation.id, "assistant", "", status="streaming"))
        for size in (SHORT, LONG)
    }
    written = dict.fromkeys(answers, 0)

    def append(size: int, count: int) -> float:
        began = time.perf_counter()
        for _ in range(count):
            store.append_to_answer(answers[size], written[size], PART)
            written[size] += len(PART)
        return (time.perf_counter() - began) / count * 1e6

    def read(size: int, count: int) -> float:
        began = time.perf_counter()
        for _ in range(count):
            store.read_message(conversation, answers[size].id, written[size] - len(PART))
        return (time.perf_counter() - began) / count * 1e6

    for size in answers:
        append(size, size)
    saves: dict[int, list[float]] = {size: [] for size in answers}
    reads: dict[int, list[float]] = {size: [] for size in answers}
    for _ in range(ROUNDS):
        for size in answers:
            saves[size].append(append(size, BATCH))
            reads[size].append(read(size, BATCH))
    return {
        "save_short": statistics.median(saves[SHORT]),
        "save_long": statistics.median(saves[LONG]),
        "read_short": statistics.median(reads[SHORT]),
        "read_long": statistics.median(reads[LONG]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", nargs="+", default=list(KINDS), choices=KINDS)
    arguments = parser.parse_args()
    print(f"| store | save a part: {SHORT} / {LONG:,} parts (µs) | ratio | follower's read: {SHORT} / {LONG:,} (µs) |")
    print("| --- | --- | --- | --- |")
    for kind in arguments.stores:
        with opened(kind) as store:
            found = measure(store)
        ratio = found["save_long"] / found["save_short"]
        print(
            f"| {kind} | {found['save_short']:,.0f} / {found['save_long']:,.0f} | {ratio:.2f} | "
            f"{found['read_short']:,.0f} / {found['read_long']:,.0f} |",
            flush=True,
        )
