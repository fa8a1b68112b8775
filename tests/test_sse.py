"""The SSE layers on their own: bytes to lines, lines to events, as the SSE specification says."""

import random

import pytest

from chatbot.services.sse import EventDecoder, LineDecoder, ServerSentEvent, events


def lines_of(*chunks: bytes, max_length: int = 1000) -> list[str]:
    decoder = LineDecoder(max_length)
    lines = [line for chunk in chunks for line in decoder.decode(chunk)]
    return lines + decoder.flush()


def test_every_line_ending_and_a_last_line_without_one():
    assert lines_of(b"a\r\nb\nc\rd") == ["a", "b", "c", "d"]


def test_lines_cut_anywhere_come_out_whole():
    assert lines_of(b"da", b"ta: one\r", b"\ndata: two\n", b"\n") == ["data: one", "data: two", ""]


def test_a_character_split_between_two_reads_stays_whole():
    emoji = "data: 🦜\n".encode()
    assert lines_of(emoji[:7], emoji[7:]) == ["data: 🦜"]


def test_invalid_utf8_is_replaced_not_fatal():
    assert lines_of(b"data: \xff\n") == ["data: \ufffd"]


def test_a_line_without_end_is_refused_past_the_limit():
    decoder = LineDecoder(max_length=10)
    decoder.decode(b"0123456")
    with pytest.raises(ValueError, match="longer than 10 characters"):
        decoder.decode(b"789abc")


def decode_all(*lines: str) -> list[ServerSentEvent]:
    decoder = EventDecoder()
    found = [event for line in lines if (event := decoder.decode(line)) is not None]
    return found + ([last] if (last := decoder.flush()) else [])


def test_data_with_and_without_the_space_and_multi_line_data():
    assert decode_all("data:{}", "", "data: [DONE]", "") == [ServerSentEvent("{}"), ServerSentEvent("[DONE]")]
    assert decode_all("data: one", "data:two", "") == [ServerSentEvent("one\ntwo")]


def test_event_id_retry_and_comments():
    found = decode_all(": keep-alive", "event: error", "id: 7", "retry: 3000", "data: x", "")
    assert found == [ServerSentEvent("x", event="error", id="7", retry=3000)]
    assert decode_all(": ping", "", "") == []


def test_an_event_with_no_data_is_not_dispatched_and_its_type_resets():
    assert decode_all("event: ping", "", "data: y", "") == [ServerSentEvent("y")]


def test_an_event_the_stream_ends_in_is_kept():
    assert decode_all("data: last") == [ServerSentEvent("last")]


def test_events_from_chunks():
    stream = [b'data:{"a":1}\n\n: keep-alive\n\ndata: {"b"', b":2}\r\n\r\ndata: [DONE]\n\n"]
    assert [event.data for event in events(stream)] == ['{"a":1}', '{"b":2}', "[DONE]"]


def event(data: str, **fields) -> ServerSentEvent:
    return ServerSentEvent(data, **fields)


LONG_COMMENT = "x" * 2048
# The EventSource format cases of web-platform-tests (eventsource/format-*.any.js and event-data) and of httpx-sse's
# decoder tests, in our own words: a stream as the server sends it, and the events a reader must find in it. Where the
# browser tests reconnect, the stream is what one connection carries. One difference is deliberate and kept from
# before: an event the stream ends in without its blank line is kept (servers that close at once do this; the
# specification drops it).
VECTORS = {
    "one BOM at the start is skipped, one later is part of a field name": (
        "\ufeffdata:1\n\n\ufeffdata:2\n\ndata:3\n\n\n",
        [event("1"), event("3")],
    ),
    "only the first of two BOMs is skipped, so the first field is unknown": (
        "\ufeff\ufeffdata:1\n\ndata:2\n\ndata:3\n\n\n",
        [event("2"), event("3")],
    ),
    "comments of every length, ended by CR, LF or CRLF, between data lines": (
        f"data:1\r:\0\n:\r\ndata:2\n:{LONG_COMMENT}\rdata:3\n:data:fail\r:{LONG_COMMENT}\ndata:4\n\n",
        [event("1\n2\n3\n4")],
    ),
    "data with a colon and nothing after it, and data without a colon": (
        "data:\n\ndata\ndata\n\ndata:test\n\n\n",
        [event(""), event("\n"), event("test")],
    ),
    "an empty event type is a message": ("event: \ndata:data\n\n\n", [event("data")]),
    "a named event, then a message": ("event:test\ndata:x\n\ndata:x\n\n\n", [event("x", event="test"), event("x")]),
    "retry in decimal, a leading zero included": ("retry:02000\ndata:x\n\n\n", [event("x", retry=2000)]),
    "a retry with a letter in it is ignored": ("retry:2000\nretry:1000x\ndata:x\n\n\n", [event("x", retry=2000)]),
    "a retry with no value is ignored": ("retry\ndata:test\n\n\n", [event("test")]),
    "a retry in digits other than ASCII is ignored": ("retry:\u00b2\nretry:\u0661\u0662\ndata:x\n\n", [event("x")]),
    "field names are exact: case, NUL, dashes and a leading space make unknown fields": (
        "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n",
        [event("\0\n 2\n1\n3\n\n4")],
    ),
    "CRLF, LF and CR end lines alike": ("data:test\r\ndata\ndata:test\r\n\r\n", [event("test\n\ntest")]),
    "one space after the colon is removed, a tab is not": (
        "data:\ttest\rdata: \ndata:test\n\n\n",
        [event("\ttest\n\ntest")],
    ),
    "unknown fields and lines without a colon are ignored": (
        "data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n\n",
        [event("test\n\ntest")],
    ),
    "a NUL in data is kept": ("data:\0\n\n\n", [event("\0")]),
    "the stream is UTF-8 whatever its charset says": ("data:ok\u2026\n\n\n", [event("ok\u2026")]),
    "lines and data: fields that are not data dispatch nothing": (
        "data:msg\ndata: msg\n\n:\nfalsefield:msg\n\nfalsefield:msg\nData:data\n\ndata\n\ndata:end\n\n",
        [event("msg\nmsg"), event(""), event("end")],
    ),
    "data lines are joined with LF": ("data: YHOO\ndata: +2\ndata: 10\n\n", [event("YHOO\n+2\n10")]),
    "an id holds for the events after it, and a bare id clears it": (
        ": test stream\n\ndata: first event\nid: 1\n\ndata: second event\nid\n\ndata:  third event\n\n",
        [event("first event", id="1"), event("second event", id=""), event(" third event", id="")],
    ),
    "an id with a NUL in it is ignored": ("data: test\nid: 123\0\n\n", [event("test")]),
    "data with and without the space read alike": ("data:test\n\ndata: test\n\n", [event("test"), event("test")]),
    "a named event from httpx-sse": (
        "event: logline\ndata: New user connected\n\n",
        [event("New user connected", event="logline")],
    ),
    "an event of retry alone dispatches nothing (the specification's rule; httpx-sse dispatches it)": (
        "retry: 10000\n\n",
        [],
    ),
    "retry with a letter after its digits, and an unknown field, dispatch nothing": (
        "retry: 1667a\n\nsomething: ignore\n\n",
        [],
    ),
    "U+2028 is not a line break": ('data: {"text":"Hello\u2028World"}\n\n', [event('{"text":"Hello\u2028World"}')]),
    "an event the stream ends in without its blank line is kept": (
        "retry:1000\ndata:test1\n\nid:test\ndata:test2",
        [event("test1", retry=1000), event("test2", id="test", retry=1000)],
    ),
}


def ways_to_cut(stream: bytes):
    """The stream whole, byte by byte with an empty read after each byte, and cut at random points (the same ones
    on every run: the generator is seeded with the stream)."""
    yield [stream]
    yield [piece for index in range(len(stream)) for piece in (stream[index : index + 1], b"")]
    cutting = random.Random(stream)
    for _ in range(20):
        cuts = sorted(cutting.sample(range(1, len(stream)), cutting.randint(1, min(8, len(stream) - 1))))
        yield [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@pytest.mark.parametrize(("text", "expected"), VECTORS.values(), ids=VECTORS.keys())
def test_the_eventsource_format_cases_read_alike_however_the_stream_is_cut(text, expected):
    stream = text.encode()
    for chunks in ways_to_cut(stream):
        assert list(events(chunks)) == expected, chunks
