"""A chunked body's framing taken off in bytes, however the reads cut it (chatbot/services/http_body.py)."""

import gzip
import zlib

import pytest

from chatbot.services.http_body import _inflated, _unchunked

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


@pytest.mark.parametrize("pack", [gzip.compress, zlib.compress])
def test_a_compressed_body_cut_anywhere_comes_out_whole(pack):
    packed = pack(CHUNKED * 20)
    for cut in range(1, len(packed), 7):
        assert b"".join(_inflated(iter([packed[:cut], packed[cut:]]), 65536)) == CHUNKED * 20, cut


def test_a_compression_bomb_comes_out_a_read_at_a_time_for_the_streams_bound_to_stop():
    bomb = gzip.compress(bytes(64 << 20))  # 64 MB of zeros in about 64 kB
    pieces = _inflated(iter([bomb]), 65536)
    assert [len(next(pieces)) for _ in range(3)] == [65536] * 3  # never the 64 MB at once
