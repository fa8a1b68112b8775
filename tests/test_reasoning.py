"""Reasoning models: thinking read wherever servers put it, stored apart, followed, exported, never sent back."""

import json
import re

import pytest

from chatbot.chat import reasoning, transfer
from chatbot.chat.branches import Tree
from chatbot.chat.replies import answer_to_continue, run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services.inference import Backend, Parameters
from chatbot.stores.conversations import Message
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf, open_chat
from tests.servers import FINISHED, ChatClient, act, finished_answer, read_until


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append((event.kind, event.text))


def chat_settings(fake, **parameters):
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="openai/gpt-oss-20b", token=TOKEN)
    return ReplySettings(backend=backend, parameters=Parameters(**parameters))


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content", "reasoning_text", "think"])
def test_reasoning_in_each_form_is_kept_apart_from_the_answer(store, fake, field):
    fake.reply(reasoning=["The user", " asks 2+2."], reasoning_field=field, tokens=["It is", " 4."])
    recorder = Recorder()
    answer = run_reply(store, store.create_conversation("alice"), "2+2?", chat_settings(fake), recorder)
    assert answer.status == "done" and answer.content == "It is 4."
    assert answer.meta["reasoning"] == "The user asks 2+2."
    assert answer.meta["reasoning_seconds"] >= 0
    kinds = [kind for kind, _ in recorder.events]
    assert kinds.index("reasoning") < kinds.index("reasoned") < kinds.index("delta")
    assert "".join(text for kind, text in recorder.events if kind == "reasoning") == "The user asks 2+2."


def test_each_text_event_tells_the_whole_answer_so_far_for_a_tab_that_shows_it_again(store, fake):
    fake.reply(reasoning=["The user", " asks 2+2."], tokens=["It is", " 4", "."], delay=0.05)
    seen = []  # (reasoning, text) as the events told them, and as each event's content so far holds them
    told = {"reasoning": "", "delta": ""}

    def listen(event):
        if event.kind in told:
            told[event.kind] += event.text
        if event.so_far is not None:
            seen.append(((told["reasoning"], told["delta"]), reasoning.split(event.so_far())))

    run_reply(store, store.create_conversation("alice"), "2+2?", chat_settings(fake), listen)
    assert len(seen) >= 4 and all(from_events == so_far for from_events, so_far in seen)
    assert seen[-1][1] == ("The user asks 2+2.", "It is 4.")


def test_an_answer_being_written_says_thinking_until_its_reasoning_ends_then_how_long():
    def label(content, **meta):
        return reasoning.label(Message("a", "c", "assistant", content, status="streaming", meta=meta))

    assert label("") == label(f"{reasoning.START}Hmm") == "Thinking…"
    assert label(f"{reasoning.START}Hmm{reasoning.END}It is", reasoning_seconds=4.2) == "Thought for 4 s"
    assert label(f"{reasoning.START}Hmm{reasoning.END}It is") == "Reasoning"  # a store that keeps no time yet
    assert label(f"{reasoning.START}a{reasoning.END}b{reasoning.START}c", reasoning_seconds=1) == "Thinking…"


def test_the_task_payloads_inline_thinking_too(store, fake):
    fake.reply(reasoning=["Hmm."], tokens=["Four."])
    backend = Backend(api="text-generation", url=fake.task_url(), model_id="google/gemma-7b-it", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    answer = run_reply(store, store.create_conversation("alice"), "2+2?", settings, Recorder())
    assert (answer.content, answer.meta["reasoning"]) == ("Four.", "Hmm.")


def test_reasoning_is_never_sent_back_to_the_model(store, fake):
    conversation = store.create_conversation("alice")
    fake.reply(reasoning=["secret thoughts"], tokens=["Four."])
    run_reply(store, conversation, "2+2?", chat_settings(fake), Recorder())
    fake.reply(tokens=["Eight."])
    run_reply(store, conversation, "And 4+4?", chat_settings(fake), Recorder())
    sent = json.dumps(fake.requests[-1].json["messages"])
    assert "secret thoughts" not in sent and "Four." in sent


def test_a_model_that_spends_its_budget_thinking_is_told_and_can_continue(store, fake):
    conversation = store.create_conversation("alice")
    fake.reply(reasoning=["Let me think", " very long"], tokens=[], finish_reason="length")
    answer = run_reply(store, conversation, "Prove it", chat_settings(fake, max_new_tokens=8), Recorder())
    assert answer.status == "done" and answer.content == "" and answer.meta["finish_reason"] == "length"
    assert answer_to_continue(store, conversation).id == answer.id
    fake.reply(reasoning=["Let me think"], tokens=[], finish_reason="stop")
    other = run_reply(store, store.create_conversation("alice"), "Prove it", chat_settings(fake), Recorder())
    assert other.status == "error" and other.error["message"].startswith("The model thought it over")


def test_exports_keep_the_reasoning(store, fake):
    conversation = store.create_conversation("alice")
    fake.reply(reasoning=["Step one.\nStep two."], tokens=["Done."])
    run_reply(store, conversation, "Plan", chat_settings(fake), Recorder())
    messages = store.messages(conversation)
    markdown = transfer.as_markdown(conversation, Tree(messages))
    assert re.search(r"> _Thought for (a moment|\d+ s):_", markdown)  # a second or more on a busy machine
    assert "> Step one.\n> Step two." in markdown and "Done." in markdown
    exported = json.loads(transfer.as_json(conversation, Tree(messages)))
    assert exported["messages"][1]["meta"]["reasoning"] == "Step one.\nStep two."
    imported = transfer.import_json(store, "bob", transfer.as_json(conversation, Tree(messages)).encode(), 20000)
    assert store.messages(imported)[1].meta["reasoning"] == "Step one.\nStep two."


def test_the_reasoning_effort_setting_is_sent(store, fake):
    fake.reply(tokens=["ok"])
    run_reply(store, store.create_conversation("alice"), "hi", chat_settings(fake, reasoning_effort="low"), Recorder())
    assert fake.requests[-1].json["reasoning_effort"] == "low"
    fake.reply(tokens=["ok"])
    run_reply(store, store.create_conversation("alice"), "hi", chat_settings(fake), Recorder())
    assert "reasoning_effort" not in fake.requests[-1].json


def test_a_tab_reloaded_mid_reasoning_follows_the_thinking_then_the_answer(instances, fake):
    first = ChatClient(instances[0].url)
    ws = first.connect()
    fake.reply(reasoning=[f" thought{i}" for i in range(30)], tokens=[" answer"], delay=0.05)
    act(ws, "send", message="Think hard")
    frames = read_until(ws, [], "beforeend:#reasoning-")  # thinking streams on the first tab
    read_until(ws, frames, "thought9")  # and has been saved (every 250 ms)
    ws.close()  # the tab is reloaded, maybe onto another worker or host
    later = first.via(instances[1].url)
    assert "thought0" in later.page()  # the page shows the thinking so far
    follower = later.connect()
    frames = read_until(follower, [], FINISHED)
    follower.close()
    followed = "".join(frames)
    assert "beforeend:#reasoning-" in followed
    finished = finished_answer(frames)
    assert "Thought for" in finished and "thought29" in finished and "answer" in finished


def test_the_reasoning_effort_is_a_setting_of_the_conversation(client, fake):
    chat = open_chat(client)
    client.post(f"{chat}/settings", data={"csrf_token": csrf(client.get(chat).text), "reasoning_effort": "high"})
    assert '<option value="high" selected>' in client.get(chat).text
    refused = client.post(
        f"{chat}/settings", data={"csrf_token": csrf(client.get(chat).text), "reasoning_effort": "extreme"}
    )
    assert refused.status_code == 400
    assert "reasoning_effort=&#39;extreme&#39;: it takes one of none, low, medium, high" in refused.text
