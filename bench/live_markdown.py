"""What rendering markdown while an answer streams costs per token, for a short and a long answer.

Run: .venv/bin/python bench/live_markdown.py [--tokens 500 20000] [--per-flush 3]
Mixed markdown (headings, paragraphs with emphasis, lists, tables, fenced code) is fed to LiveMarkdown in
token-sized pieces, `--per-flush` tokens a flush as the 40 ms coalescing groups them; then one 20,000-token code
block and one 20,000-token paragraph, the longest open blocks there are. CPU time, so other processes on the
machine do not count; the cost per token must not grow with the answer (ratio near 1).
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat.live_markdown import LiveMarkdown  # noqa: E402

SECTIONS = [
    "## Step {n}: what to do\n\n",
    "This is **important** and *worth* reading: the `config` file holds {n} settings, see [the docs](https://example.org/{n}).\n\n",
    "- first, open the file\n- then change **one** setting\n- and save it, with `:w` in vim\n\n",
    "1. install\n2. configure the *server*\n3. run it\n\n",
    "| name | value | note |\n|---|---|---|\n| port | {n} | the *default* |\n| host | 127.0.0.1 | local only |\n\n",
    "```python\ndef step_{n}(value):\n    # a comment\n    total = 0\n    for item in range(value):\n"
    "        total += item * {n}\n\n    return total\n```\n\n",
    "> A quote, with a ~~struck~~ word and a long enough line to wrap.\n\n",
]


def tokens(text: str) -> list[str]:
    """Token-sized pieces, about as a model writes them: a word or part of one, with the space before it."""
    return re.findall(r"\s*[^\s]{1,4}|\s+", text)


def mixed(count: int) -> list[str]:
    """`count` tokens of mixed markdown."""
    pieces: list[str] = []
    for n, section in zip(itertools.count(), itertools.cycle(SECTIONS)):
        pieces += tokens(section.format(n=n))
        if len(pieces) >= count:
            return pieces[:count]
    raise AssertionError


def one_block(count: int, code: bool) -> list[str]:
    """`count` tokens of one open block: a code fence that does not end, or a paragraph with no line break."""
    line = "    result = compute(value, {n})  # step {n}\n" if code else "a *word* or **two**, number {n}; "
    pieces = tokens("```python\n") if code else []
    for n in itertools.count():
        pieces += tokens(line.format(n=n))
        if len(pieces) >= count:
            return pieces[:count]
    raise AssertionError


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
