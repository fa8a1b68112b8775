"""Every kind of backend, by configuration alone, against fakes that write each server's wire format."""

import re

import pytest
from flask import render_template

from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services.errors import InferenceError
from chatbot.services.inference import Backend, Parameters, build_request, stream_reply
from chatbot.stores.memory import MemoryStore
from tests.fakes.hf_server import DIALECTS, TOKEN

HELLO = [{"role": "user", "content": "Hello"}]


def answer(backend, turns=HELLO):
    return "".join(stream_reply(build_request(backend, Parameters(), turns), backend))


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_chat_completions_in_every_servers_dialect(fake, dialect):
    fake.reply(tokens=["Hi", " there", "!"], dialect=dialect, keepalive=True)
    model = "meta-llama/Llama-3.1-8B-Instruct:fastest"  # the router's provider policy goes through as it is
    backend = Backend(api="chat", url=fake.url + "/v1", model_id=model, token=TOKEN)
    assert answer(backend) == "Hi there!"
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["model"] == model
    assert fake.requests[-1].json["messages"] == HELLO


@pytest.mark.parametrize("dialect", ["vllm", "text-generation-webui"])
def test_completions_with_the_apps_own_chat_format(fake, dialect):
    fake.reply(tokens=["Paris", "."], dialect=dialect)
    backend = Backend(api="completions", url=fake.url + "/v1", model_id="google/gemma-2b-it", token=TOKEN)
    assert answer(backend) == "Paris."
    sent = fake.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.json["prompt"] == "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
    assert sent.json["stop"] == ["<end_of_turn>"]


@pytest.mark.parametrize("route", ["/generate_stream", "/"])
def test_tgi_with_the_task_payload(fake, route):
    fake.require_token = False
    fake.reply(tokens=["From", " TGI"])
    backend = Backend(api="text-generation", url=fake.url + route, model_id="tiiuae/falcon-7b-instruct")
    assert answer(backend) == "From TGI"
    assert fake.requests[-1].path == route
    assert fake.requests[-1].json["inputs"] == "User: Hello\nAssistant:"


def test_tgi_info_trims_the_oldest_turns_to_fit(fake):
    fake.require_token = False
    fake.info = {"model_id": "tiiuae/falcon-7b-instruct", "max_input_tokens": 300, "max_total_tokens": 400}
    store = MemoryStore()
    conversation = store.create_conversation("alice")
    backend = Backend(api="text-generation", url=fake.url + "/generate_stream", model_id="tiiuae/falcon-7b-instruct")
    settings = ReplySettings(backend=backend, parameters=Parameters(max_new_tokens=100), system_prompt="Be brief.")
    for question in ("first " * 100, "second " * 30, "third"):
        fake.reply(tokens=["ok"])
        run_reply(store, conversation, question, settings, lambda event: None)
    prompt = fake.requests[-1].json["inputs"]
    assert prompt.startswith("Be brief.\n") and prompt.endswith("User: third\nAssistant:")
    assert "first" not in prompt and "second" in prompt


def test_text_generation_webui_wants_its_api_key(fake):
    fake.unauthorized_body = {"detail": "Unauthorized"}
    fake.reply(dialect="text-generation-webui")
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="any", token="wrong"))
    assert error.value.kind == "auth"
    assert "Unauthorized" in error.value.message and "that server's API key" in error.value.hint


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            404,
            {"error": {"message": 'model "llama9" not found, try pulling it first', "type": "api_error"}},
            "not_found",
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "request (13392 tokens) exceeds the available context size (8192 "
                    "tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 13392,
                    "n_ctx": 8192,
                }
            },
            "too_long",
        ),
        (503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, "loading"),
        (
            400,
            {
                "error": {
                    "message": "The requested model 'x' is not supported by any provider you have enabled.",
                    "type": "invalid_request_error",
                    "code": "model_not_supported",
                }
            },
            "not_found",
        ),
    ],
)
def test_local_servers_errors(fake, status, body, kind):
    fake.reply(status=status, body=body)
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="llama9", token=TOKEN))
    assert error.value.kind == kind


@pytest.mark.parametrize(
    ("status", "message", "window"),
    [
        (400, "request (13392 tokens) exceeds the available context size (8192 tokens), try increasing it", 8192),
        (422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000", 4096),
        (400, "Requested tokens (5000) exceed context window of 2048", 2048),
        (400, "This model's maximum context length is 32768 tokens. However, your request has 40000 input", 32768),
    ],
)
def test_the_context_window_a_server_names_in_its_refusal_is_read(fake, status, message, window):
    fake.reply(status=status, body={"error": {"message": message}})
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="local", token=TOKEN))
    assert error.value.kind == "too_long" and error.value.context_length == window
    assert f"at most {window:,} tokens" in error.value.hint


def test_an_error_event_inside_a_chat_stream(fake):
    fake.reply(tokens=["Par"], error_event={"error": {"message": "out of memory", "type": "server_error"}})
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="m", token=TOKEN))
    assert error.value.kind == "generation" and "out of memory" in error.value.message


def test_the_router_names_its_provider_and_the_server_counts_the_tokens(app, fake, store):
    fake.reply(tokens=["Hi", "!"])  # as the router streams it, with x-inference-provider and a usage chunk
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="openai/gpt-oss-20b", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    answer = run_reply(store, store.create_conversation("alice"), "Hello", settings, lambda event: None)
    assert answer.meta["provider"] == "novita"
    assert answer.meta["tokens"] == 2 and not answer.meta["tokens_estimated"]
    with app.test_request_context():
        shown = render_template("chat/_message.html", message=answer)
    assert "2 tokens" in shown and "via novita" in shown and "estimated" not in shown


def test_tokens_a_server_does_not_count_are_marked_estimated(app, fake, store):
    fake.reply(tokens=["Hi", " you", "!"], dialect="ollama")  # no usage at all
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="llama3.2", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    answer = run_reply(store, store.create_conversation("alice"), "Hello", settings, lambda event: None)
    assert answer.meta["tokens"] == 3 and answer.meta["tokens_estimated"]
    with app.test_request_context():
        assert "estimated: the server did not count them" in render_template("chat/_message.html", message=answer)


def test_a_speed_worked_out_from_an_estimated_count_is_marked_estimated_too(app, fake, store):
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="llama3.2", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    shown = {}
    for dialect in ("ollama", "vllm"):  # Ollama counts nothing, so the app counts the pieces; vLLM counts them
        fake.reply(tokens=["Hi", " you", "!"], dialect=dialect, delay=0.02)
        answer = run_reply(store, store.create_conversation("alice"), "Hello", settings, lambda event: None)
        with app.test_request_context():
            shown[dialect] = render_template("chat/_message.html", message=answer)
    assert re.search(r">~</span>[\d.]+ tokens/s", shown["ollama"])
    assert "~" not in shown["vllm"] and re.search(r" · [\d.]+ tokens/s", shown["vllm"])


CREDITS = (
    "You have exceeded your monthly included credits for Inference Providers. "
    "Subscribe to PRO to get 20x more monthly included credits."
)


@pytest.mark.parametrize(
    ("reply", "kind", "words"),
    [
        ({"status": 402, "body": {"error": CREDITS}}, "credits", "huggingface.co/settings/billing"),
        ({"status": 400, "body": {"error": "NOT_ENOUGH_BALANCE"}}, "credits", "remove HF_API_TOKEN"),
        (
            {
                "status": 400,
                "body": {"error": "The requested model 'x/y' is not supported by any provider you have enabled."},
            },
            "not_found",
            "Check MODEL_ID",
        ),
        ({"status": 429, "body": {"error": "Too many requests"}}, "rate_limit", "Wait a minute"),
        ({"status": 429, "body": "rate limited", "headers": {"Retry-After": "12"}}, "rate_limit", "about 12 s"),
    ],
)
def test_the_routers_errors_of_today(fake, reply, kind, words):
    fake.reply(**reply)
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="x/y", token=TOKEN))
    assert error.value.kind == kind
    assert words in error.value.message + " " + error.value.hint


def test_the_router_without_a_token(fake):
    fake.unauthorized_body = {"error": "Invalid username or password."}
    with pytest.raises(InferenceError) as error:
        answer(Backend(api="chat", url=fake.url + "/v1", model_id="x/y"))
    assert error.value.message.startswith("No Hugging Face token is set, so 127.0.0.1:")
    assert "Invalid username or password." in error.value.message
    assert "HF_API_TOKEN=hf_" in error.value.hint
