"""Each protocol reads its own events into typed chunks: text, the end and why, what the server counted."""

from chatbot.services.protocols import PROTOCOLS, Finish, Reasoning, Text, Usage
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
