"""Reasoning written inline, `<think>...</think>` in the answer's text (TGI, older llama.cpp, many GGUF models).

`TagSplitter` follows a stream of text pieces and says which parts are inside the tags, also when a tag is cut
between two pieces ("<thi" + "nk>"): a piece's end that could begin a tag is held back until the next piece.
"""

from __future__ import annotations

from collections.abc import Iterator

from chatbot.services.protocols.base import Chunk, Reasoning, Text


class TagSplitter:
    """Pieces of text in, (inside the tags?, text) out, in order."""

    def __init__(self, opening: str = "<think>", closing: str = "</think>") -> None:
        self.opening, self.closing = opening, closing
        self.inside = False
        self._held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        text, self._held = self._held + text, ""
        found: list[tuple[bool, str]] = []
        while text:
            tag = self.closing if self.inside else self.opening
            at = text.find(tag)
            if at >= 0:
                if at:
                    found.append((self.inside, text[:at]))
                self.inside = not self.inside
                text = text[at + len(tag) :]
                continue
            keep = 0
            if tag[0] in text[1 - len(tag) :]:  # its end could begin the tag (a piece is often a whole read)
                keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0)
            if keep:
                text, self._held = text[:-keep], text[-keep:]
            if text:
                found.append((self.inside, text))
            break
        return found

    def flush(self) -> list[tuple[bool, str]]:
        """What was held back, when the stream ends (a tag's beginning that never became one)."""
        held, self._held = self._held, ""
        return [(self.inside, held)] if held else []


def split_inline(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """The chunks with inline `<think>` text turned into Reasoning; a piece's tokens are counted with the first
    part it gives (or the next, when it is all held back)."""
    splitter = TagSplitter()
    owed = 0  # tokens of pieces held back whole

    def parts(found: list[tuple[bool, str]]) -> Iterator[Chunk]:
        nonlocal owed
        for inside, text in found:
            yield Reasoning(text, owed) if inside else Text(text, owed)
            owed = 0

    for chunk in chunks:
        if not isinstance(chunk, Text):
            yield from parts(splitter.flush() if not isinstance(chunk, Reasoning) else [])
            yield chunk
            continue
        owed += chunk.tokens
        yield from parts(splitter.feed(chunk.text))
    yield from parts(splitter.flush())
