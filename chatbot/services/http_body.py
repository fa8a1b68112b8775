"""A streamed response's body read as it arrives, all that has arrived at once.

A fast server writes an event per token, each its own chunk of a chunked body: read through urllib3 and
http.client, every read gives one chunk, so everything after it works once per token. Here the socket's buffered
reader is read directly (whatever it holds, or one receive) and the chunks' framing taken off in bytes, so one read
gives every event that has arrived. A body that is compressed, or has a length, is read through urllib3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

MAX_SIZE_LINE = 4096  # bytes of a chunk's size line, extensions included


def reads(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body's bytes as they arrive, at most `size` a read (more, joined, when a read ends many chunks)."""
    raw = response.raw
    buffered = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's reader of the socket
    plain = response.headers.get("Content-Encoding", "identity").lower() == "identity"
    if buffered is None or not plain or (not raw.chunked and raw.length_remaining is not None):
        while read := raw.read1(size):
            yield read
    elif raw.chunked:
        yield from _unchunked(buffered, size)
    else:  # the body ends when the server closes the connection
        while read := buffered.read1(size):
            yield read


def _unchunked(buffered: Any, size: int) -> Iterator[bytes]:
    """The data of a chunked body (RFC 9112, 7.1), all the chunks a read holds together; it ends at the last chunk
    (its trailer is not read) or when the connection closes. ValueError for a body that is not chunked."""
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
                    return
        if found:
            yield b"".join(found)
