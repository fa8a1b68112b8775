"""Each protocol reads its own events into typed chunks: text, the end and why, what the server counted."""

import itertools
import json
import tracemalloc

from chatbot.services import sse
from chatbot.services.backend import Backend, Parameters
from chatbot.services.protocols import (
    CALLS_HEARD,
    PROTOCOLS,
    Finish,
    Reasoning,
    Text,
    ToolCall,
    ToolCallPiece,
    ToolCalls,
    Usage,
)
from config import INFERENCE_APIS


def read(api, *events):
    return [chunk for event in events for chunk in PROTOCOLS[api].chunks(event)]


def test_every_inference_api_has_its_protocol():
    assert sorted(PROTOCOLS) == sorted(INFERENCE_APIS)


def test_text_generation_tokens_the_special_end_and_the_details():
    token = {"token": {"text": " Paris", "special": False}, "generated_text": None, "details": None}
    end = {
        "token": {"text": "<end_of_turn>", "special": True},
        "generated_text": " Paris",
        "details": {"finish_reason": "length", "generated_tokens": 2},
    }
    assert read("text-generation", token, end) == [Text(" Paris"), Usage(completion_tokens=2), Finish("length")]
    assert read("text-generation", {"generated_text": "Whole"}) == [Text("Whole"), Finish("stop")]


def test_chat_chunks_with_an_empty_first_delta_a_finish_and_usage_of_its_own():
    first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]}
    text = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "max_tokens"}]}
    usage = {
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1},
        "timings": {"predicted_per_second": 51.5},
    }
    assert read("chat", first, text, last, usage) == [Text("Hi"), Finish("length"), Usage(9, 1, 51.5)]
    whole = {"choices": [{"message": {"role": "assistant", "content": "All"}, "finish_reason": "stop"}]}
    assert read("chat", whole) == [Text("All"), Finish("stop")]


def test_completions_text_and_usage_in_the_last_chunk():
    last = {"choices": [{"text": "!", "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    assert read("completions", {"choices": [{"text": "Hi", "finish_reason": None}]}, last) == [
        Text("Hi"),
        Text("!"),
        Finish("stop"),
        Usage(3, 2),
    ]


def test_reasoning_from_every_field_servers_use():
    for name in ("reasoning", "reasoning_content", "reasoning_text"):
        event = {"choices": [{"delta": {"content": "", name: "We"}, "finish_reason": None}]}
        assert read("chat", event) == [Reasoning("We")]
    whole = {"choices": [{"message": {"content": "4", "reasoning_content": "2+2"}, "finish_reason": "stop"}]}
    assert read("chat", whole) == [Reasoning("2+2"), Text("4"), Finish("stop")]


def tool_call_events(calls: list[tuple[str, str, str]], cuts: list[list[int]]) -> list[dict]:
    """A streamed turn that calls tools as servers send it: each call's first piece with its id and name and empty
    arguments, then its arguments in pieces cut at `cuts` (one list of positions per call), the calls' pieces
    interleaved, and a last chunk with finish_reason "tool_calls"."""

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": None})]
    pieces: list[list[dict]] = []
    for index, (call_id, name, arguments) in enumerate(calls):
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        bounds = [0, *cuts[index], len(arguments)]
        rest = [{"index": index, "function": {"arguments": arguments[a:b]}} for a, b in itertools.pairwise(bounds)]
        pieces.append([first, *rest])
    while any(pieces):
        for queue in pieces:
            if queue:
                events.append(chunk({"tool_calls": [queue.pop(0)]}))
    events.append(chunk({}, "tool_calls"))
    return events


def called(events: list[dict]) -> tuple[list[ToolCall], list]:
    calls, others = ToolCalls(), []
    for chunk in read("chat", *events):
        calls.add(chunk) if isinstance(chunk, ToolCallPiece) else others.append(chunk)
    return calls.calls(), others


SEARCH = ("call_a1", "web__search", '{"query": "caf\u00e9 \\"open\\" late", "limit": 3}')
FETCH = ("call_b2", "web__fetch", '{"url": "https://example.org/a?b=1"}')


def test_two_tool_calls_streamed_in_pieces_cut_anywhere_are_put_together():
    for cut in range(len(SEARCH[2]) + 1):
        events = tool_call_events([SEARCH, FETCH], [[cut], [cut % len(FETCH[2]), len(FETCH[2]) - 1]])
        calls, others = called(events)
        assert calls == [ToolCall(*SEARCH), ToolCall(*FETCH)]
        assert others == [Finish("tool_calls")]


def test_tool_calls_whose_event_stream_is_cut_anywhere_between_reads_are_put_together():
    stream = "".join(f"data: {json.dumps(event)}\n\n" for event in tool_call_events([SEARCH, FETCH], [[5, 9], [3]]))
    data = (stream + "data: [DONE]\n\n").encode()
    for cut in range(1, len(data)):
        events = [json.loads(e.data) for e in sse.events([data[:cut], data[cut:]]) if e.data != "[DONE]"]
        assert called(events)[0] == [ToolCall(*SEARCH), ToolCall(*FETCH)]


def test_a_whole_answer_with_tool_calls_and_servers_that_leave_out_index_or_send_objects():
    whole = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {"id": "x", "type": "function", "function": {"name": "a", "arguments": {"q": 1}}},
                        {"type": "function", "function": {"name": "b", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    calls, others = called([whole])
    assert calls == [ToolCall("x", "a", '{"q": 1}'), ToolCall("call_1", "b", "{}")]
    assert others == [Text("Let me look."), Finish("tool_calls")]


def test_the_request_offers_tools_and_carries_the_calls_and_their_results_back():
    backend = Backend(api="chat", url="http://127.0.0.1:1/v1", model_id="m")
    tools = [{"type": "function", "function": {"name": "web__echo", "description": "", "parameters": {}}}]
    call = ToolCall("call_1", "web__echo", '{"text": "hi"}')
    turns = [
        {"role": "user", "content": "Say hi with the tool"},
        {"role": "assistant", "content": "", "tool_calls": [call.as_message_part()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_2", "content": "hi again"},
    ]
    payload = PROTOCOLS["chat"].request(backend, Parameters(), turns, "", tools).payload
    assert payload["tools"] == tools
    assert payload["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [call.as_message_part()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_2", "content": "hi again"},
    ]
    assert "tools" not in PROTOCOLS["chat"].request(backend, Parameters(), turns[:1], "").payload


def test_a_server_streaming_a_million_empty_tool_calls_has_only_the_first_few_kept_as_they_come():
    """Empty pieces of ever new indexes say no character (the stream's bound counts none): 1,000,000 of them, 12
    MB of events, took the chat 500 MB and 8 s. Only the first CALLS_HEARD indexes heard are kept."""
    events = [
        {"choices": [{"delta": {"tool_calls": [{"index": i} for i in range(n, n + 10_000)]}}]}
        for n in range(0, 1_000_000, 10_000)
    ]
    tracemalloc.start()
    try:
        calls = ToolCalls()
        for event in events:
            for chunk in PROTOCOLS["chat"].chunks(event):
                calls.add(chunk)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert [call.id for call in calls.calls()] == [f"call_{n}" for n in range(CALLS_HEARD)] and kept < 100_000


def test_each_tool_call_of_a_turn_has_an_id_of_its_own_within_the_ids_length_whatever_its_server_says():
    """The chat's own id for a call is `call_N`, N its place: an index of 4,000 digits made one of 4,005
    characters, and a server's id `call_1` on the first call and none on the second made both `call_1` (the model
    could not tell their results apart); a server giving two calls one id too."""
    huge = int("9" * 4000)
    events = [
        {"choices": [{"delta": {"tool_calls": [{"index": huge, "function": {"name": "a", "arguments": "{}"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "b"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"name": "c"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 2, "id": "same", "function": {"name": "d"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 3, "id": "same", "function": {"name": "e"}}]}}]},
    ]
    calls, _ = called(events)
    assert [(call.id, call.name) for call in calls] == [
        ("call_1", "b"),
        ("call_2", "c"),
        ("same", "d"),
        ("call_3", "e"),
        ("call_4", "a"),
    ]


def test_a_finish_reason_that_is_not_a_word_reads_as_stop_or_is_cut_not_kept_whole():
    """A hostile server's finish_reason: an object failed the answer as the chat's own fault ("The chat failed
    while answering", a traceback in the log), and a line's worth of text (1 MB) was kept with the answer."""
    said = [
        read("chat", {"choices": [{"delta": {}, "finish_reason": reason}]})
        for reason in ({"a": 1}, ["length"], 7, "x" * 1_000_000, "length")
    ]
    assert said == [[Finish("stop")], [Finish("stop")], [Finish("stop")], [Finish("x" * 40)], [Finish("length")]]


def test_a_tool_calls_id_or_name_that_is_not_text_is_left_out_and_fails_no_answer_as_the_chats_fault():
    """A number for a call's id failed the answer as the chat's own fault ("The chat failed while answering", a
    traceback in the log: its length was taken), and a list for its name was kept as the call's name."""
    events = [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": 5, "function": {"name": ["web__echo"]}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "id": {"a": 1}, "function": {"name": 7}}]}}]},
    ]
    assert called(events)[0] == [ToolCall("call_0", "", ""), ToolCall("call_1", "", "")]
