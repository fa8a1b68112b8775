"""The SSE layers on their own: bytes to lines, lines to events, as the SSE specification says."""

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
