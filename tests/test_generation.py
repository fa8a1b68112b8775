"""One reply end to end against the fake: saving, coalescing, failures kept with the text so far."""

import threading
import time

import pytest

from chatbot.chat.coalescing import coalesced
from chatbot.chat.events import Kind
from chatbot.chat.message_checks import message_problem
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.local_model.server import free_port
from chatbot.services.inference import Backend, Parameters
from chatbot.services.protocols import Text
from tests.fakes.hf_server import TOKEN
from tests.helpers import Recorder, new_store, settings_for


def test_a_reply_is_streamed_saved_and_rendered(fake):
    store, conversation = new_store()
    fake.reply(tokens=["**Paris**", " is", " the", " capital."])
    recorder = Recorder()
    answer = run_reply(store, conversation, "Capital of France?", settings_for(fake.task_url()), recorder)
    assert answer.status == "done"
    assert answer.content == "**Paris** is the capital."
    assert answer.html == "<p><strong>Paris</strong> is the capital.</p>\n"
    assert answer.meta["tokens"] == 5  # as the server counts them (TGI: details.generated_tokens, the end token too)
    assert not answer.meta["tokens_estimated"] and answer.meta["model"] == "google/gemma-7b-it"
    assert recorder.kinds()[0] == "started" and recorder.kinds()[-1] == "finished"
    assert "".join(text for _, kind, text in recorder.events if kind == "delta") == "**Paris** is the capital."
    stored = store.messages(conversation)
    assert [(m.role, m.content) for m in stored] == [
        ("user", "Capital of France?"),
        ("assistant", "**Paris** is the capital."),
    ]
    assert store.get_conversation("alice", conversation.id).title == "Capital of France?"


def test_history_and_system_prompt_reach_the_model(fake):
    store, conversation = new_store()
    settings = settings_for(fake.task_url(), system_prompt="Be brief.")
    fake.reply(tokens=["Hi"])
    run_reply(store, conversation, "Hello", settings, Recorder())
    fake.reply(tokens=["Fine"])
    run_reply(store, conversation, "How are you?", settings, Recorder())
    assert fake.requests[-1].json["inputs"] == (
        "<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_the_users_message_is_saved_even_when_the_backend_is_down():
    store, conversation = new_store()
    answer = run_reply(
        store, conversation, "Are you there?", settings_for(f"http://127.0.0.1:{free_port()}/x"), Recorder()
    )
    assert answer.status == "error" and answer.error["kind"] == "unreachable"
    messages = store.messages(conversation)
    assert messages[0].content == "Are you there?"
    assert messages[1].error["message"].startswith("Could not reach http://127.0.0.1:")


def test_a_partial_answer_is_kept_and_marked(fake):
    store, conversation = new_store()
    fake.reply(tokens=["Once", " upon", " a", " time"], cut_after=2)
    answer = run_reply(store, conversation, "Tell a story", settings_for(fake.task_url()), Recorder())
    assert answer.status == "error" and answer.error["kind"] == "truncated"
    assert store.messages(conversation)[1].content == "Once upon"


def test_an_empty_answer_is_an_error(fake):
    store, conversation = new_store()
    fake.reply(tokens=[])
    answer = run_reply(store, conversation, "Hi", settings_for(fake.task_url()), Recorder())
    assert answer.error["kind"] == "empty"


def test_tokens_are_coalesced_to_one_fragment_per_interval(fake):
    store, conversation = new_store()
    fake.reply(tokens=[f" t{i}" for i in range(300)], delay=0.002)
    recorder = Recorder()
    started = time.monotonic()
    settings = settings_for(fake.task_url(), parameters=Parameters(max_new_tokens=400))  # all 300 tokens come
    answer = run_reply(store, conversation, "Count", settings, recorder)
    elapsed = time.monotonic() - started
    deltas = [at for at, kind, _ in recorder.events if kind == "delta"]
    assert answer.meta["tokens"] == 301  # the server's count, the end token included
    assert len(deltas) <= elapsed / 0.04 + 2
    steady = deltas[:-1]  # the last group goes out as soon as the answer ends
    assert all(b - a >= 0.035 for a, b in zip(steady, steady[1:], strict=False))


def test_an_answer_stopped_already_does_not_ask_the_server():
    asked = []

    def stream():
        asked.append(True)  # the request would be sent here
        yield Text("never")

    stopped = threading.Event()
    stopped.set()
    assert list(coalesced(stream(), 0.04, stopped)) == []
    time.sleep(0.1)  # no reader thread left to ask it later either
    assert asked == []


def test_a_token_is_not_held_back_when_the_backend_stalls(fake):
    store, conversation = new_store()
    fake.reply(tokens=["quick", " slow"], delay=1.0)
    recorder = Recorder()
    started = time.monotonic()
    run_reply(store, conversation, "Hi", settings_for(fake.task_url()), recorder)
    first_delta = next(at for at, kind, _ in recorder.events if kind == "delta")
    assert first_delta - started < 0.5


def test_the_partial_answer_is_saved_while_it_streams(fake):
    store, conversation = new_store()
    fake.reply(tokens=["a", "b", "c", "d"], delay=0.3)
    seen = []
    thread = threading.Thread(
        target=run_reply, args=(store, conversation, "Hi", settings_for(fake.task_url(), save_seconds=0.2), Recorder())
    )
    thread.start()
    time.sleep(0.8)
    seen = store.messages(conversation)[-1]
    thread.join()
    assert seen.status == "streaming" and seen.content.startswith("a")


def test_stop_keeps_the_partial_answer(fake):
    store, conversation = new_store()
    fake.reply(tokens=["one", " two", " three", " four"], delay=0.3)
    cancel = threading.Event()

    def stop_after_the_first_token(event):
        if event.kind == "delta":
            cancel.set()

    answer = run_reply(store, conversation, "Count", settings_for(fake.task_url()), stop_after_the_first_token, cancel)
    assert answer.status == "stopped"
    assert answer.content.startswith("one")
    assert store.messages(conversation)[1].status == "stopped"


def test_message_problems():
    assert message_problem("", 10) == "Type a message first."
    assert "limit is 10" in message_problem("x" * 11, 10)
    assert message_problem("fine", 10) is None
    assert message_problem("", 10, with_files=True) is None  # a file sent alone


def test_an_answer_cut_at_the_length_limit_is_continued_in_place(fake):
    from chatbot.chat.replies import answer_to_continue, run_continuation

    store, conversation = new_store()
    fake.reply(tokens=["The list:", " one,", " two,"], finish_reason="length")
    first = run_reply(store, conversation, "Count to four", settings_for(fake.task_url()), Recorder())
    assert first.meta["finish_reason"] == "length" and answer_to_continue(store, conversation).id == first.id

    fake.reply(tokens=[" three,", " four."])
    recorder = Recorder()
    continued = run_continuation(store, conversation, settings_for(fake.task_url()), recorder)
    assert fake.requests[-1].json["inputs"].endswith("<start_of_turn>model\nThe list: one, two,")
    assert continued.id == first.id and continued.content == "The list: one, two, three, four."
    assert "finish_reason" not in continued.meta or continued.meta["finish_reason"] != "length"
    assert recorder.kinds()[0] == "resumed"
    assert [m.content for m in store.messages(conversation)] == ["Count to four", "The list: one, two, three, four."]
    assert answer_to_continue(store, conversation) is None


def test_a_chat_api_is_asked_in_words_to_continue(fake):
    from chatbot.services.inference import build_request
    from chatbot.services.protocols.chat_completions import CONTINUE_ASK

    backend = Backend(api="chat", url=fake.url + "/v1", model_id="m")
    request = build_request(backend, Parameters(), [{"role": "user", "content": "Count"}], "one, two,")
    assert request.payload["messages"][-2:] == [
        {"role": "assistant", "content": "one, two,"},
        {"role": "user", "content": CONTINUE_ASK},
    ]


def test_an_image_in_the_history_is_shown_only_to_a_model_that_takes_images():
    from chatbot.chat.answer_writer import history_turns
    from chatbot.services.prompts import alternate
    from chatbot.stores.conversations import Message
    from tests.samples import png

    image = {"id": "i1", "name": "red.png", "kind": "image", "mime": "image/png", "size": 10}
    stored = {"i1": (image, png())}
    messages = [
        Message("m1", "c", "user", "What is it?", meta={"attachments": [image]}),
        Message("m2", "c", "user", "And the gone one?", meta={"attachments": [{**image, "id": "gone"}]}),
    ]
    seeing = history_turns(messages, stored.get, images=True)
    assert seeing[0]["content"] == "What is it?" and seeing[0]["images"][0].startswith("data:image/png;base64,")
    assert seeing[1] == {"role": "user", "content": "[Attached file red.png: no longer kept]\n\nAnd the gone one?"}
    _, merged = alternate(seeing)  # two user turns become one, the image kept
    assert len(merged) == 1 and len(merged[0]["images"]) == 1
    blind = history_turns(messages, stored.get, images=False)
    assert blind[0] == {
        "role": "user",
        "content": "[Attached image red.png: not shown to this model, which does not take images]\n\nWhat is it?",
    }


def chat_settings(fake):
    """A chat server that reports no context window (llama-cpp-python's has no /props and no context_length)."""
    return ReplySettings(
        backend=Backend(api="chat", url=fake.url + "/v1", model_id="local", token=TOKEN), parameters=Parameters()
    )


def long_chat(fake, exchanges=4):
    """A conversation of `exchanges` long questions (300 tokens each, as the fake counts) and short answers."""
    store, conversation = new_store()
    for number in range(exchanges):
        run_reply(store, conversation, f"Question {number}: " + "word " * 240, chat_settings(fake), Recorder())
    fake.requests.clear()
    return store, conversation


@pytest.mark.parametrize("words", ["llama-cpp-python", "vllm"])
def test_a_server_that_names_its_window_in_its_refusal_gets_the_oldest_turns_dropped_and_is_asked_again(fake, words):
    store, conversation = long_chat(fake)
    fake.context_window, fake.window_words = 1000, words
    answer = run_reply(store, conversation, "And the last one?", chat_settings(fake), Recorder())
    assert answer.status == "done" and answer.content == "Hello there!"
    refused, trimmed = fake.requests
    assert len(trimmed.json["messages"]) < len(refused.json["messages"])
    assert trimmed.json["messages"][-1]["content"] == "And the last one?"
    assert not any(message["content"].startswith("Question 0") for message in trimmed.json["messages"])
    fake.requests.clear()
    assert run_reply(store, conversation, "One more?", chat_settings(fake), Recorder()).status == "done"
    assert len(fake.requests) == 1  # the window is remembered for that model: trimmed before it is asked


def test_a_message_longer_than_the_window_the_server_names_is_asked_again_once_then_told_to_be_shorter(fake):
    store, conversation = new_store()
    fake.context_window = 1000
    answer = run_reply(store, conversation, "word " * 1000, chat_settings(fake), Recorder())
    assert len(fake.requests) == 2
    assert answer.status == "error" and answer.error["kind"] == "too_long"
    assert "maximum context length is 1000 tokens" in answer.error["message"]
    assert "1,000 tokens" in answer.error["hint"] and "shorten your message" in answer.error["hint"]


def test_a_server_that_does_not_say_its_window_gets_the_chat_to_name_the_setting(fake):
    store, conversation = long_chat(fake)
    fake.context_window, fake.window_words = 1000, "unnumbered"
    answer = run_reply(store, conversation, "And the last one?", chat_settings(fake), Recorder())
    assert len(fake.requests) == 1
    assert answer.error["kind"] == "too_long" and "The prompt is too long" in answer.error["message"]
    assert "context_length for local in MODELS" in answer.error["hint"]
    assert "CONTEXT_LENGTH in .env" in answer.error["hint"]


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "x" * 100_000, "completion_tokens": 2},
        {"prompt_tokens": 10**300, "completion_tokens": -1_000_000},
        {"prompt_tokens": [1], "completion_tokens": {"a": 1}},
        "every token",
    ],
)
def test_counts_a_server_says_that_are_no_counts_are_not_believed_and_the_answer_ends_as_usual(fake, usage):
    """A hostile server's usage: text for the prompt's tokens made the writer fail after saving the answer (its
    tab never told it ended, the day's tokens never settled); 10**300 or -1,000,000 tokens were kept and counted."""
    store, conversation = new_store()
    fake.reply(tokens=["Hi", " there"], usage=usage)
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="meta-llama/Llama-3.1-8B-Instruct", token=TOKEN)
    recorder = Recorder()
    answer = run_reply(store, conversation, "Hello", ReplySettings(backend=backend, parameters=Parameters()), recorder)
    stored = store.messages(conversation)[-1]
    assert (stored.status, stored.content, answer.content) == ("done", "Hi there", "Hi there")
    assert (stored.meta["prompt_tokens"], stored.meta["tokens"]) == (None, 2)
    assert recorder.kinds()[-1] is Kind.FINISHED
