"""What rendering markdown while an answer streams costs per token, for a short and a long answer.

Run: .venv/bin/python bench/live_markdown.py [--tokens 500 20000] [--per-flush 3]
Mixed markdown (headings, paragraphs with emphasis, lists, tables, fenced code) is fed to LiveMarkdown in
token-sized pieces, `--per-flush` tokens a flush as the 40 ms coalescing groups them; then one 20,000-token code
block and one 20,000-token paragraph, the longest open blocks there are. CPU time, so other processes on the
machine do not count; the cost per token must not grow with the answer (ratio near 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat.live_markdown import LiveMarkdown  # noqa: E402
from tests.samples import mixed, one_block  # noqa: E402


def cost(pieces: list[str], per_flush: int) -> dict:
    """CPU µs per token of feeding `pieces`, the slowest flush in ms, and characters parsed per character."""
    flushes = ["".join(pieces[index : index + per_flush]) for index in range(0, len(pieces), per_flush)]
    live = LiveMarkdown()
    slowest = 0.0
    started = time.process_time()
    for flush in flushes:
        before = time.process_time()
        live.feed(flush)
        slowest = max(slowest, time.process_time() - before)
    spent = time.process_time() - started
    return {
        "us_per_token": spent / len(pieces) * 1e6,
        "slowest_flush_ms": slowest * 1000,
        "parsed_per_char": live.parsed_chars / live.length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs=2, default=[500, 20_000])
    parser.add_argument("--per-flush", type=int, default=3)
    options = parser.parse_args()
    short, long = options.tokens
    cost(mixed(short), options.per_flush)  # warm up: the lexers' first use, the regular expressions
    rows = {
        f"mixed, {short:,} tokens": cost(mixed(short), options.per_flush),
        f"mixed, {long:,} tokens": cost(mixed(long), options.per_flush),
        f"one code block, {long:,} tokens": cost(one_block(long, code=True), options.per_flush),
        f"one paragraph, {long:,} tokens": cost(one_block(long, code=False), options.per_flush),
    }
    print(f"{options.per_flush} tokens a flush")
    for name, row in rows.items():
        print(
            f"{name:<32} {row['us_per_token']:7.1f} µs/token  slowest flush {row['slowest_flush_ms']:6.2f} ms"
            f"  {row['parsed_per_char']:5.1f} characters parsed per character"
        )
    ratio = rows[f"mixed, {long:,} tokens"]["us_per_token"] / rows[f"mixed, {short:,} tokens"]["us_per_token"]
    print(f"ratio ({long:,} / {short:,} tokens, mixed): {ratio:.2f}")


if __name__ == "__main__":
    main()
