"""A chunked body's framing taken off in bytes, however the reads cut it (chatbot/services/http_body.py)."""

import pytest

from chatbot.services.http_body import _unchunked

BODY = b"data:1\n\n", b"data: two\n\n", b"x" * 300
CHUNKED = (
    b"".join(f"{len(part):x};name=value\r\n".encode() + part + b"\r\n" for part in BODY) + b"0\r\nTrailer: x\r\n\r\n"
)


class Reads:
    """A buffered reader that gives `pieces`, one a read, then nothing (the connection closed)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    def read1(self, size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def test_a_body_cut_anywhere_in_two_reads_comes_out_whole_and_ends_at_its_last_chunk():
    for cut in range(1, len(CHUNKED)):  # a read gives one byte at least (none: the connection closed)
        reads = Reads(CHUNKED[:cut], CHUNKED[cut:], b"never read")
        assert b"".join(_unchunked(reads, 65536)) == b"".join(BODY), cut
        assert reads.pieces[-1:] == [b"never read"]  # nothing read after the last chunk


def test_one_read_of_many_chunks_is_one_piece():
    assert list(_unchunked(Reads(CHUNKED), 65536)) == [b"".join(BODY)]


def test_a_body_cut_short_ends_with_what_came():
    assert b"".join(_unchunked(Reads(CHUNKED[:20]), 65536)) == b"data:1"  # of "8;name=value\r\ndata:1"


@pytest.mark.parametrize("body", [b"zz\r\ndata", b"3\r\nabcdef\r\n", b"-3\r\nabc\r\n", b"1" * 5000])
def test_a_body_that_is_not_chunked_is_refused(body):
    with pytest.raises(ValueError):
        list(_unchunked(Reads(body), 65536))
