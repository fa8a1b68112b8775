"""Server-sent events, in two small layers as the SSE specification (WHATWG HTML, 9.2) reads a stream.

`LineDecoder` turns bytes, as they arrive, into lines: UTF-8 decoded across chunk boundaries (an emoji split
between two reads stays whole) with one leading byte order mark skipped, lines ended by `\\r\\n`, `\\n` or
`\\r` however the reads cut them, and a line longer than `max_length` refused with ValueError instead of being
buffered without end. `EventDecoder` turns lines into events: `data:` lines joined with `\\n`, `event:`, `id:`
and `retry:` (ASCII digits only) fields, comments (`:keep-alive`) skipped, one space after the colon removed
(`data:{...}` from TGI and `data: {...}` from llama.cpp read alike), an event dispatched at each blank line.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from typing import NamedTuple

MAX_LINE = 1 << 20  # characters; no server writes one event of a megabyte


class ServerSentEvent(NamedTuple):  # a tuple: made for every event of a stream, several times cheaper than a class
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class LineDecoder:
    """Bytes in, complete lines out; the cost of a line is linear in its length however it is cut."""

    def __init__(self, max_length: int = MAX_LINE) -> None:
        self.max_length = max_length
        self._text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")  # skips one leading BOM
        self._pending: list[str] = []  # the unfinished line, in the pieces it came in
        self._pending_length = 0
        self._after_cr = False  # the last piece ended with \r: a \n that follows belongs to it

    def decode(self, chunk: bytes) -> list[str]:
        return self._split(self._text.decode(chunk))

    def flush(self) -> list[str]:
        """The last line, when the stream ends without a line break."""
        lines = self._split(self._text.decode(b"", final=True))
        if self._pending:
            lines.append("".join(self._pending))
            self._pending, self._pending_length = [], 0
        return lines

    def _split(self, text: str) -> list[str]:
        if not text:  # an empty read (or part of a character) says nothing, not even that a \r was not followed
            return []
        longest = self._pending_length + len(text)  # no line of this read is longer
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        *complete, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if complete:
            complete[0] = "".join(self._pending) + complete[0]
            self._pending, self._pending_length = [], 0
        if rest:
            self._pending.append(rest)
            self._pending_length += len(rest)
        if self._pending_length > self.max_length or (
            longest > self.max_length and any(len(line) > self.max_length for line in complete)
        ):
            raise ValueError(f"a line longer than {self.max_length:,} characters")
        return complete


class EventDecoder:
    """Lines in, events out (None until a blank line ends an event)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def decode_all(self, lines: list[str]) -> list[ServerSentEvent]:
        """The events that `lines` end, as `decode` finds them line by line, with data lines read in place."""
        found = []
        data = self._data
        for line in lines:
            if not line:
                if (event := self._dispatch()) is not None:
                    found.append(event)
                data = self._data
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            else:
                self.decode(line)  # another field or a comment: never an event
        return found

    def flush(self) -> ServerSentEvent | None:
        """An event the stream ended in without its blank line (servers that close at once do this)."""
        return self._dispatch()

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data, self._event = [], ""
        return event


def batches(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[list[ServerSentEvent]]:
    """The events of a stream read in `chunks` of bytes: those each chunk ends, together (none for a chunk that
    ends no event), and those the stream ends in."""
    lines, decoder = LineDecoder(max_line), EventDecoder()
    for chunk in chunks:
        yield decoder.decode_all(lines.decode(chunk))
    last = decoder.decode_all(lines.flush())
    if (event := decoder.flush()) is not None:
        last.append(event)
    yield last


def events(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[ServerSentEvent]:
    """The events of a stream read in `chunks` of bytes, one by one."""
    for batch in batches(chunks, max_line):
        yield from batch
