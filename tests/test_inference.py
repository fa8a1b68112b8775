"""Payloads, the URL switch, the stream parser and every failure, against the fake HF API."""

import threading
import time

import pytest

from chatbot.local_model.server import free_port
from chatbot.services import inference
from chatbot.services.errors import InferenceError, error_message
from chatbot.services.inference import (
    Backend,
    Parameters,
    backend_from_config,
    build_request,
    stream_chunks,
    stream_reply,
)
from chatbot.services.protocols import PROVIDER_CHARS, Finish, Provider, Text, ToolCall, ToolCallPiece, ToolCalls
from chatbot.services.settings import load_settings
from tests.fakes.hf_server import TOKEN
from tests.helpers import NOTES_PARAMETERS

HELLO = [{"role": "user", "content": "Hello"}]


def task_backend(fake, token=TOKEN, **fields):
    return Backend(
        api="text-generation",
        url=fake.task_url(),
        model_id="google/gemma-7b-it",
        token=token,
        read_timeout=fields.pop("read_timeout", 5.0),
        **fields,
    )


def chat_backend(fake, token=TOKEN):
    return Backend(api="chat", url=fake.url + "/v1", model_id="google/gemma-2-2b-it", token=token)


def answer(backend, turns=HELLO):
    return "".join(stream_reply(build_request(backend, Parameters(), turns), backend))


def failure(backend) -> InferenceError:
    with pytest.raises(InferenceError) as error:
        answer(backend)
    return error.value


def test_text_generation_payload_is_the_one_in_the_users_notes(fake):
    request = build_request(task_backend(fake), Parameters(), HELLO)
    assert request.payload == {
        "inputs": "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "parameters": NOTES_PARAMETERS,
        "options": {"wait_for_model": True, "use_cache": False},
        "stream": True,
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-wait-for-model"] == "true"


def test_greedy_decoding_sends_no_sampling_parameters(fake):
    request = build_request(task_backend(fake), Parameters(do_sample=False), HELLO)
    assert request.payload["parameters"]["do_sample"] is False
    assert "temperature" not in request.payload["parameters"]


def test_no_token_no_authorization_header(fake):
    assert "Authorization" not in build_request(task_backend(fake, token=None), Parameters(), HELLO).headers


def test_chat_payload(fake):
    turns = [{"role": "system", "content": "Be brief."}, *HELLO]
    request = build_request(chat_backend(fake), Parameters(max_new_tokens=100), turns)
    assert request.url == fake.url + "/v1/chat/completions"
    assert request.payload == {
        "model": "google/gemma-2-2b-it",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        "max_tokens": 100,
        "temperature": 0.7,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_the_url_switch_is_configuration_alone():
    task = {"MODEL_ID": "mistralai/mistral-7b-instruct", "INFERENCE_API": "text-generation"}
    hf = backend_from_config(load_settings(task))
    assert hf.url == "https://router.huggingface.co/hf-inference/models/mistralai/Mistral-7B-Instruct-v0.2"
    router_chat = backend_from_config(load_settings({"HF_API_TOKEN": "hf_x"}))  # a token and nothing else
    assert router_chat.api == "chat" and router_chat.url == "https://router.huggingface.co/v1"
    local = backend_from_config(load_settings({"API_URL": "http://127.0.0.1:8080/v1"}))
    assert local.url == "http://127.0.0.1:8080/v1"
    assert build_request(local, Parameters(), HELLO).url == "http://127.0.0.1:8080/v1/chat/completions"
    tgi = backend_from_config(load_settings({"API_URL": "http://127.0.0.1:3000/generate_stream"}))
    assert build_request(tgi, Parameters(), HELLO).url == "http://127.0.0.1:3000/generate_stream"


def test_the_token_is_not_in_the_backends_repr():
    assert TOKEN not in repr(Backend(api="chat", url="http://x", model_id="m", token=TOKEN))


def test_task_stream_without_space_and_without_done_hides_special_tokens(fake):
    fake.reply(tokens=["Paris", " is", " the", " capital."], keepalive=True)
    assert answer(task_backend(fake)) == "Paris is the capital."
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert fake.requests[-1].json["inputs"].endswith("<start_of_turn>model\n")


def test_chat_stream_with_space_null_first_delta_usage_chunk_and_done(fake):
    fake.reply(tokens=["Hi", " you"], keepalive=True)
    assert answer(chat_backend(fake)) == "Hi you"
    assert fake.requests[-1].path == "/v1/chat/completions"


@pytest.mark.parametrize("make_backend", [task_backend, chat_backend])
def test_the_tokens_of_one_read_come_as_one_piece_that_counts_them(fake, make_backend):
    sent = [f" t{n}" for n in range(200)]
    fake.reply(tokens=sent)
    backend = make_backend(fake)
    chunks = stream_chunks(build_request(backend, Parameters(), HELLO), backend)
    pieces = [next(chunk for chunk in chunks if isinstance(chunk, Text))]
    time.sleep(0.5)  # the rest is written meanwhile: the next read takes it all
    pieces += [chunk for chunk in chunks if isinstance(chunk, Text)]
    assert "".join(piece.text for piece in pieces) == "".join(sent)
    assert sum(piece.tokens for piece in pieces) == len(sent) and len(pieces) < len(sent) / 2


def test_tokens_arrive_as_they_are_sent(fake):
    fake.reply(tokens=["first", " second"], delay=1.0)
    backend = task_backend(fake)
    started = time.monotonic()
    tokens = stream_reply(build_request(backend, Parameters(), HELLO), backend)
    assert next(tokens) == "first"
    assert time.monotonic() - started < 0.5
    assert list(tokens) == [" second"]


@pytest.mark.parametrize(
    ("reply", "kind", "words"),
    [
        ({"status": 401, "body": {"error": "Invalid credentials in Authorization header"}}, "auth", "HF_API_TOKEN"),
        (
            {"status": 403, "body": {"error": "Access to model google/gemma-7b-it is restricted."}},
            "gated",
            "https://huggingface.co/google/gemma-7b-it",
        ),
        ({"status": 404, "body": "Not Found"}, "not_found", "MODEL_ID"),
        (
            {
                "status": 410,
                "body": {
                    "error": "https://api-inference.huggingface.co/ is no longer supported. "
                    "Please use https://router.huggingface.co/ instead."
                },
            },
            "not_found",
            "router.huggingface.co",
        ),
        (
            {
                "status": 400,
                "body": {
                    "error": {
                        "message": "The requested model 'x' is not supported by any provider you have enabled.",
                        "type": "invalid_request_error",
                        "code": "model_not_supported",
                    }
                },
            },
            "not_found",
            "MODEL_ID",
        ),
        (
            {"status": 503, "body": {"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 20.0}},
            "loading",
            "about 20 s",
        ),
        ({"status": 429, "body": "Too Many Requests", "headers": {"Retry-After": "30"}}, "rate_limit", "about 30 s"),
        (
            {
                "status": 422,
                "body": {
                    "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                    "4096. Given: 4000 `inputs` tokens and 250 `max_new_tokens`",
                    "error_type": "validation",
                },
            },
            "too_long",
            "new chat",
        ),
        ({"status": 500, "body": {"error": "unknown error"}}, "server", "unknown error"),
    ],
)
def test_each_error_status_becomes_a_clear_message(fake, reply, kind, words):
    fake.reply(**reply)
    error = failure(task_backend(fake))
    assert error.kind == kind
    assert words in error.message + " " + error.hint
    assert TOKEN not in error.message + error.hint


def test_missing_token_says_where_to_put_one(fake):
    error = failure(task_backend(fake, token=None))
    assert error.kind == "auth"
    assert "No Hugging Face token is set" in error.message
    assert "Authorization header is required" in error.message
    assert "HF_API_TOKEN" in error.hint and "huggingface.co/settings/tokens" in error.hint


def test_loading_and_rate_limit_carry_when_to_retry(fake):
    fake.reply(status=503, body={"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 20.0})
    assert failure(task_backend(fake)).retry_after == 20.0
    fake.reply(status=429, body={"error": "Rate limit reached"}, headers={"Retry-After": "7"})
    assert failure(task_backend(fake)).retry_after == 7.0


def test_unreachable_server_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/models/x"
    error = failure(Backend(api="text-generation", url=url, model_id="x"))
    assert error.kind == "unreachable"
    assert url in error.message and "connection refused" in error.message
    assert "API_URL" in error.hint


def test_a_silent_server_times_out(fake):
    fake.reply(first_delay=2.0)
    error = failure(task_backend(fake, read_timeout=0.5))
    assert error.kind == "timeout"
    assert "READ_TIMEOUT" in error.hint or "CONNECT_TIMEOUT" in error.hint


def test_a_truncated_stream_is_an_error_after_the_text_so_far(fake):
    fake.reply(tokens=["Once", " upon", " a", " time"], cut_after=2)
    backend = task_backend(fake)
    received = []
    with pytest.raises(InferenceError) as error:
        for token in stream_reply(build_request(backend, Parameters(), HELLO), backend):
            received.append(token)
    assert received == ["Once", " upon"]
    assert error.value.kind == "truncated"


def test_a_stream_closed_without_an_answer_names_the_context_setting_when_the_window_is_unknown(fake):
    fake.reply(tokens=[], special_end=False)  # a server that takes a prompt longer than its context, then ends
    error = failure(task_backend(fake))
    assert error.kind == "truncated" and "without an answer" in error.message
    assert "context_length for google/gemma-7b-it in MODELS" in error.hint
    fake.reply(tokens=[], special_end=False)
    assert "context_length" not in failure(task_backend(fake, context_length=8192)).hint  # known: trimmed to it


def test_an_error_inside_a_200_stream(fake):
    fake.reply(
        tokens=["Half"],
        special_end=False,
        error_event={"error": "Request failed during generation: CUDA out of memory", "error_type": "generation"},
    )
    error = failure(task_backend(fake))
    assert error.kind == "generation"
    assert "CUDA out of memory" in error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "text"}, "text"),
        ({"error": {"message": "nested", "type": "x", "code": 400}}, "nested"),
        ({"error": ["one", "two"]}, "one; two"),
        ({"errors": [{"message": "listed"}]}, "listed"),
        ({"detail": "Unauthorized"}, "Unauthorized"),
        ('{"detail": [{"msg": "field required"}]}', "field required"),
        ("plain text", "plain text"),
    ],
)
def test_every_error_envelope_gives_one_message(body, message):
    assert error_message(body) == message


def test_a_stream_that_stalls_times_out_after_the_text_so_far(fake):
    fake.reply(tokens=["Slow", " answer"], delay=1.5)
    backend = task_backend(fake, read_timeout=0.5)
    received = []
    with pytest.raises(InferenceError) as error:
        for token in stream_reply(build_request(backend, Parameters(), HELLO), backend):
            received.append(token)
    assert received == ["Slow"]
    assert error.value.kind == "timeout"
    assert "stopped sending" in error.value.message


def test_a_page_that_is_not_an_answer(fake):
    fake.reply(page="<html><body>Please log in</body></html>")
    error = failure(task_backend(fake))
    assert error.kind == "malformed"
    assert "Please log in" in error.message
    assert "INFERENCE_API" in error.hint


def test_an_unknown_host_is_named():
    url = "http://no-such-host.invalid/v1"
    error = failure(Backend(api="chat", url=url, model_id="x"))
    assert error.kind == "unreachable"
    assert error.message == f"Could not reach {url}/chat/completions: the host name is unknown."


def test_stop_closes_the_connection_at_once_even_while_the_server_stalls(fake):
    """The next token would come in 30 s: Stop must not wait for it with the reader stuck in a read."""
    fake.reply(tokens=["First", " never"], delay=30)  # the task stream: its first event is the first token
    backend = task_backend(fake)
    cancel = threading.Event()
    chunks = stream_chunks(build_request(backend, Parameters(), HELLO), backend, cancel)
    assert next(chunk for chunk in chunks if isinstance(chunk, Text)) == Text("First")
    cancel.set()
    started = time.monotonic()
    rest = list(chunks)  # ends quietly: no "cut off" error for an answer the user stopped
    assert time.monotonic() - started < 2
    assert not [chunk for chunk in rest if isinstance(chunk, Text)]


TOOLS = [{"type": "function", "function": {"name": "web__echo", "description": "Echo", "parameters": {}}}]


def test_two_tool_calls_streamed_in_pieces_arrive_as_pieces_that_make_them_whole(fake):
    search = ("call_1", "web__search", '{"query": "weather in Paris", "days": 2}')
    echo = ("call_2", "web__echo", '{"text": "h\u00e9llo"}')
    fake.reply(tokens=["Let me check."], tool_calls=[search, echo], tool_piece=3, dialect="vllm")
    backend = chat_backend(fake)
    chunks = list(stream_chunks(build_request(backend, Parameters(), HELLO, tools=TOOLS), backend))
    calls = ToolCalls()
    for chunk in chunks:
        if isinstance(chunk, ToolCallPiece):
            calls.add(chunk)
    assert calls.calls() == [ToolCall(*search), ToolCall(*echo)]
    assert [c for c in chunks if isinstance(c, Text | Finish)] == [Text("Let me check."), Finish("tool_calls")]
    assert len([c for c in chunks if isinstance(c, ToolCallPiece)]) > 10
    assert fake.requests[-1].json["tools"] == TOOLS


def test_a_server_that_refuses_tools_answers_400_saying_so(fake):
    fake.refuses_tools = True
    backend = chat_backend(fake)
    with pytest.raises(InferenceError) as error:
        list(stream_chunks(build_request(backend, Parameters(), HELLO, tools=TOOLS), backend))
    assert error.value.status == 400 and "tools param requires --jinja flag" in error.value.message
    assert "".join(stream_reply(build_request(backend, Parameters(), HELLO), backend)) == "Hello there!"


def pauses_taken(monkeypatch, paces: list[float], size: int = 16) -> int:
    """The pauses a reader takes over reads of `size` bytes, each taking its pace in seconds (0: bytes waiting)."""
    sleep = time.sleep
    pauses = []

    def reads_of_a_server(response, read_size):
        for pace in paces:
            sleep(pace)  # the read (a wait for a server writing at its pace)
            yield b"x" * size

    def sleep_or_pause(seconds):
        pauses.append(seconds) if seconds == inference.PAUSE_SECONDS else sleep(seconds)

    monkeypatch.setattr(inference.http_body, "reads", reads_of_a_server)
    monkeypatch.setattr(inference.time, "sleep", sleep_or_pause)
    assert len(list(inference._chunks(None))) == len(paces)
    return len(pauses)


def test_a_reader_waiting_on_its_server_never_pauses(monkeypatch):
    assert pauses_taken(monkeypatch, [0.005] * 20) == 0  # its waits let the other threads and greenlets run


def test_a_reader_of_a_flooding_server_pauses_after_each_read_so_that_the_next_gathers_more(monkeypatch):
    assert pauses_taken(monkeypatch, [0] * 20) == 19  # from the second read that found bytes waiting


def test_a_reader_that_finds_a_token_waiting_now_and_then_does_not_pause(monkeypatch):
    assert pauses_taken(monkeypatch, [0.005, 0] * 4) == 0  # its turn came late: a token was waiting


def test_a_reader_far_behind_its_server_reads_on_without_pausing(monkeypatch):
    assert pauses_taken(monkeypatch, [0] * 20, size=inference.READ_SIZE) == 0  # more is waiting already


def test_a_provider_header_of_64_kb_is_kept_cut_to_a_names_length(fake):
    """The router's `x-inference-provider` names who served the answer; it is kept with the answer and shown under
    it, so a hostile server's 60,000 characters were saved and sent to every tab."""
    fake.reply(tokens=["Hi"], headers={"x-inference-provider": "p" * 60_000})
    backend = chat_backend(fake)
    [provider] = [
        chunk
        for chunk in stream_chunks(build_request(backend, Parameters(), HELLO), backend)
        if isinstance(chunk, Provider)
    ]
    assert provider.name == "p" * (PROVIDER_CHARS - 1) + "…"
