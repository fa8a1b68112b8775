"""What a tab shows of an answer's body (and reasoning) while it streams, kept as digests, so that its end sends only
what differs.

The tab's body holds, for good, the HTML appended to it (the complete blocks of chat/live_markdown.py, the text
ended before each tool call) with each call's block, and after them the open block, which changes. A `ShownBody`
keeps no HTML: a running blake2b digest of what was appended, with CUT in place of each call's block, its length,
and a digest of each call's record as its block shows it. Each flush adds its own HTML to the digest once, so what
it costs grows with the flush, not the answer.

When the answer ends, its body as a page shows it (chat/tool_call_places.py: the pieces of its HTML with the calls
after each) is read as the same sequence: when what the tab holds for good is its start, only the rest (what took
the open block's place, and what followed) and the calls whose record changed are sent; otherwise the body is sent
whole. Its reasoning, text added to what the tab shows, is kept when it is the one the answer keeps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from chatbot.chat.tool_call_places import CUT, Numbered

Piece = tuple[Markup, list[Numbered]]  # HTML and the calls made after it, as tool_call_places.finished gives them


@dataclass
class Rest:
    """What a finished body holds past what a tab shows of it (`pieces`), the calls shown whose block changed, and
    whether the reasoning shown is the one the answer keeps."""

    pieces: list[Piece] = field(default_factory=list)
    changed: list[Numbered] = field(default_factory=list)
    reasoning: bool = False


class ShownBody:
    """The body of one answer (`answer_id`) as one tab holds it for good; an empty id for none known."""

    def __init__(self, answer_id: str = "") -> None:
        self.answer_id = answer_id
        self._digest = hashlib.blake2b(digest_size=16)
        self._length = 0  # characters added so far, CUTs included
        self._calls: list[bytes] = []  # each call's record as its block shows it, in order
        self._reasoning = hashlib.blake2b(digest_size=16)  # the reasoning's text shown

    def add(self, html: str) -> None:
        """HTML appended to the body for good."""
        self._digest.update(_bytes(html))
        self._length += len(html)

    def add_call(self, record: dict[str, Any]) -> None:
        """A call's block appended after what the body holds."""
        self.add(CUT)
        self._calls.append(_record_digest(record))

    def change_call(self, number: int, record: dict[str, Any]) -> None:
        """The block of the `number`th call shown replaced (its record changed)."""
        self._calls[number] = _record_digest(record)

    def add_reasoning(self, text: str) -> None:
        """Reasoning added to the one shown."""
        self._reasoning.update(_bytes(text))

    def rest(self, answer_id: str, pieces: list[Piece], reasoning: str) -> Rest | None:
        """What the finished body (`pieces`) holds past what is shown, and whether its `reasoning` is the one shown;
        None when what is shown is not its start, or is that of another answer."""
        if answer_id != self.answer_id:
            return None
        digest, left, rest = hashlib.blake2b(digest_size=16), self._length, Rest()
        shown: list[Numbered] = []
        for html, calls in pieces:
            if rest.pieces:  # past what is shown: all of it
                rest.pieces.append((html, calls))
                continue
            taken = min(left, len(html))
            digest.update(_bytes(html[:taken]))
            left -= taken
            if taken < len(html):
                rest.pieces.append((Markup(html[taken:]), calls))
                continue
            for number, call in enumerate(calls):
                if left < len(CUT):
                    rest.pieces.append((Markup(), calls[number:]))
                    break
                digest.update(_bytes(CUT))
                left -= len(CUT)
                shown.append(call)
        if left or digest.digest() != self._digest.digest() or len(shown) != len(self._calls):
            return None
        rest.changed = [call for call, seen in zip(shown, self._calls, strict=True) if _record_digest(call[1]) != seen]
        rest.reasoning = bool(reasoning) and hashlib.blake2b(_bytes(reasoning), digest_size=16).digest() == (
            self._reasoning.digest()
        )
        return rest


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _record_digest(record: dict[str, Any]) -> bytes:
    """A call's record as its block shows it (its place apart, which moves when the answer ends)."""
    shown = {key: value for key, value in record.items() if key != "at"}
    return hashlib.blake2b(_bytes(json.dumps(shown, sort_keys=True, default=str)), digest_size=16).digest()
