"""A streamed response's body read as it arrives, all that has arrived at once.

A fast server writes an event per token, each its own chunk of a chunked body: read through http.client, every
read would give one chunk, so everything after it would work once per token. Here the socket's buffered reader is
read directly (whatever it holds, or one receive) and the chunks' framing taken off in bytes, so one read gives
every event that has arrived. A body read to its clean end says so (`Response.ended`): its connection may be used
again. A gzip or deflate body (sent though the client asks for none) is inflated as it comes.
"""

from __future__ import annotations

import http.client
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from chatbot.services.http_client import Response

MAX_SIZE_LINE = 4096  # bytes of a chunk's size line, extensions included; and of a trailer
INFLATED = ("gzip", "x-gzip", "deflate")


def reads(response: Response, size: int) -> Iterator[bytes]:
    """The body's bytes as they arrive, at most `size` a read (more, joined, when a read ends many chunks);
    ValueError for an encoding the chat does not read."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        yield from _framed(response, size)
    elif encoding in INFLATED:
        yield from _inflated(_framed(response, size), size)
    else:
        raise ValueError(f"a body in the {encoding} encoding, which the chat does not read")


def _inflated(reads: Iterator[bytes], size: int) -> Iterator[bytes]:
    """A gzip or zlib body's data, at most `size` bytes a piece: a read of 64 kB may inflate to 64 MB (a thousand
    to one), so it is let out a piece at a time for the stream's bound to stop."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or a zlib header, told apart by itself
    for read in reads:
        data = inflater.decompress(read, size)
        while data:
            yield data
            data = inflater.decompress(inflater.unconsumed_tail, size)


def _framed(response: Response, size: int) -> Iterator[bytes]:
    """The body's bytes with its framing taken off: chunked, of a length, or to the connection's end."""
    raw = response.raw
    if raw.fp is None:  # no body (http.client closed it already)
        response.ended()
    elif raw.chunked:
        yield from _unchunked(raw.fp, size, response.ended)
    elif raw.length is not None:
        while read := raw.read1(size):
            yield read
        if raw.length:
            raise http.client.IncompleteRead(b"", raw.length)
        response.ended()
    else:  # the body ends when the server closes the connection
        while read := raw.fp.read1(size):
            yield read


def _unchunked(buffered: Any, size: int, ended: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """The data of a chunked body (RFC 9112, 7.1), all the chunks a read holds together; it ends at the last chunk
    and its trailer (then calls `ended` when nothing came after them) or when the connection closes. ValueError
    for a body that is not chunked."""
    data, at = b"", 0
    left = 0  # bytes of the current chunk's data still to come; -1: its closing CRLF
    while read := buffered.read1(size):
        data, at = data[at:] + read, 0
        found = []
        while at < len(data):
            if left > 0:
                piece = data[at : at + left]
                found.append(piece)
                at, left = at + len(piece), left - len(piece)
                left = left or -1
            elif left < 0:
                if len(data) - at < 2:
                    break
                if data[at : at + 2] != b"\r\n":
                    raise ValueError("a chunk of the body does not end where its size says")
                at, left = at + 2, 0
            else:
                end = data.find(b"\r\n", at)
                if end < 0:
                    if len(data) - at > MAX_SIZE_LINE:
                        raise ValueError("a chunk's size line without end")
                    break
                left = int(data[at:end].split(b";", 1)[0].strip() or b"x", 16)  # ValueError when not hexadecimal
                if left < 0:
                    raise ValueError("a chunk of negative size")
                at = end + 2
                if left == 0:  # the last chunk
                    if found:
                        yield b"".join(found)
                    if _trailer_read(buffered, data[at:], size):
                        ended()
                    return
        if found:
            yield b"".join(found)


def _trailer_read(buffered: Any, data: bytes, size: int) -> bool:
    """Read the trailer after the last chunk (`data`: what of it was read already) up to its empty line; whether
    it ended there, with nothing after it (else the connection is not used again)."""
    data = b"\r\n" + data  # the last chunk's size line ended with this
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_SIZE_LINE or not (read := buffered.read1(size)):
            return False
        data += read
    return end + 4 == len(data)
