"""Text that is valid Unicode wherever it comes from: a JSON `"\\ud83d"` escape, an emoji whose two halves come
in two events, a crafted message. A lone surrogate cannot be written as UTF-8: stored or sent, it breaks the
conversation for good (Redis, the page, the exports), so it never gets past where text enters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from chatbot.services.protocols.base import Chunk, held_back

SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """Surrogate pairs joined into their characters, lone surrogates made U+FFFD."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_data(value: Any) -> Any:
    """A decoded JSON document (as json.loads gives it) with every string in it made valid."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [valid_data(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(str(key)): valid_data(item) for key, item in value.items()}
    return value


def repaired(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """A stream's text made valid; a high surrogate at the end of a piece waits for its other half in the next."""

    def feed(text: str) -> tuple[str, str]:
        if text and "\ud800" <= text[-1] <= "\udbff":
            return valid_text(text[:-1]), text[-1]
        return valid_text(text), ""

    return held_back(chunks, feed, valid_text)
