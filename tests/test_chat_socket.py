"""The chat socket in this process, on a fake WebSocket and the in-memory store (no gunicorn): what a tab is sent
while an answer is written here, stopped, followed from another tab, or left for another branch."""

from __future__ import annotations

import re

import pytest
from flask import render_template
from markupsafe import Markup

from chatbot.chat.live_markdown import Update
from chatbot.stores.conversations import Message
from chatbot.web.socket.fragments import Fragments
from tests.fakes.websocket import SAID, SocketTab
from tests.servers import ANSWER_TEXT, FINISHED, shown_answer

LIVE_TAIL = re.compile(r'<span class="live-tail">([^<]*)</span>')
TARGET = re.compile(r'(?:id="|#)((?:open|reasoning|reasoning-summary|wait)-m|call-m-\d+)\b')


@pytest.fixture
def store_url():
    return "memory://"


@pytest.fixture
def tab(app, store):
    """A tab on a new chat of its own."""
    opened = SocketTab(app, store.create_conversation("alice"))
    yield opened
    opened.close()


def test_an_answer_streams_as_markdown_and_ends_as_stored(tab, store, fake):
    fake.reply(tokens=["**Paris**", " is", " the", " capital", "."], delay=0.05)
    ended = FINISHED.search(tab.act("send", message="Capital of France?"))
    answer = store.messages(tab.socket.view.conversation)[-1]
    assert ended is not None and ended[1] == answer.id and ended[2] == "done"
    sent = tab.ws.sent
    assert 'class="message user' in sent[0] and "Capital of France?" in sent[0]  # the question, then the answer
    assert sum(bool(ANSWER_TEXT.search(fragment)) for fragment in sent) >= 2  # streamed, not sent whole
    assert LIVE_TAIL.sub(r"\1", shown_answer(sent)).strip() == answer.html.strip()  # what streamed is what is kept


def test_a_message_sent_without_saying_what_the_tab_shows_adds_to_its_branch_without_sending_it_again(tab, fake):
    for question in ("First question", "Second question", "Third question"):
        fake.reply(tokens=[f"Answer to the {question.lower()}"])
        before = tab.send("send", message=question)  # no "after", as a client other than the page may send
        tab.ws.wait_for(FINISHED, after=before)
        started = tab.ws.sent[before]
        assert question in started and 'id="messages" hx-swap-oob="beforeend"' in started
        assert "Answer to the first" not in started  # the history is not sent again with each answer


def test_stop_keeps_the_partial_answer_and_frees_the_tab_at_once(tab, store, fake):
    fake.reply(tokens=[f" w{n}" for n in range(200)], delay=0.05)
    before = tab.send("send", message="Go on")
    tab.ws.wait_for(ANSWER_TEXT, after=before)
    ended = FINISHED.search(tab.act("stop"))
    assert ended is not None and ended[2] == "stopped"
    stopped = store.messages(tab.socket.view.conversation)[-1]
    assert stopped.status == "stopped" and 0 < len(stopped.content.split()) < 200
    fake.reply(tokens=["Next"])
    assert FINISHED.search(tab.act("send", message="Again")) is not None  # not refused as "wait"


def test_a_second_action_while_an_answer_is_written_is_refused_in_words(tab, fake):
    fake.reply(tokens=[f" w{n}" for n in range(40)], delay=0.05)
    before = tab.send("send", message="Go on")
    tab.ws.wait_for(ANSWER_TEXT, after=before)
    said = SAID.search(tab.act("regenerate"))
    assert said is not None and said["words"] == "Wait for the answer to finish, or press Stop."
    tab.ws.wait_for(FINISHED, after=before)


def test_a_tab_opened_while_another_writes_follows_the_answer_to_its_end(app, tab, store, fake):
    fake.reply(tokens=[f" w{n}" for n in range(30)], delay=0.05)
    before = tab.send("send", message="Count")
    tab.ws.wait_for(ANSWER_TEXT, after=before)
    later = SocketTab(app, tab.socket.view.conversation)
    try:
        ended = FINISHED.search(later.ws.wait_for(FINISHED))
        answer = store.messages(tab.socket.view.conversation)[-1]
        assert ended is not None and ended[1] == answer.id
        assert later.ws.sent[0].startswith(f'<article id="msg-{answer.id}"')  # the answer so far, then the rest
        assert any(ANSWER_TEXT.search(fragment) for fragment in later.ws.sent[1:-1])
    finally:
        later.close()


def test_a_tab_that_goes_to_another_branch_hears_only_that_the_answer_ended(tab, store, fake):
    conversation = tab.socket.view.conversation
    fake.reply(tokens=["One"])
    tab.act("send", message="Count")
    fake.reply(tokens=[f" w{n}" for n in range(30)], delay=0.05)
    before = tab.send("regenerate")
    tab.ws.wait_for(ANSWER_TEXT, after=before)
    question, first_answer, regenerated = store.messages(conversation)
    switched = tab.ws.sent.index(tab.act("switch", message_id=first_answer.id))
    ended = tab.ws.wait_for('id="send-button">Send<', after=switched + 1)  # the controls of an idle chat
    assert store.messages(conversation)[2].status == "done" and store.messages(conversation)[2].id == regenerated.id
    after_switch = tab.ws.sent[switched + 1 :]
    assert not any(ANSWER_TEXT.search(fragment) or regenerated.id in fragment for fragment in after_switch)
    assert not FINISHED.search(ended)  # the answer of the branch left is not shown
    assert store.get_conversation("alice", conversation.id).leaf_id == first_answer.id
    assert question.id == first_answer.parent_id == regenerated.parent_id


def test_an_expired_chat_says_so_and_keeps_nothing(tab, store):
    store.delete_conversation(tab.socket.view.conversation)
    said = SAID.search(tab.act("send", message="Hello?"))
    assert said is not None and said["words"].startswith("This chat has expired")


def test_every_streaming_fragment_targets_an_element_of_the_message_being_written(app):
    fragments = Fragments(app)
    writing = Message("m", "c", "assistant", "Looking.", status="streaming")
    writing.meta["tool_calls"] = [
        {"id": "1", "name": "t", "arguments": "{}", "result": "", "status": "running", "at": 8}
    ]
    with app.test_request_context():
        page = render_template("chat/_message.html", message=writing)
        sent = [
            fragments.text("m", Update(done="<p>a</p>", open="<p>b</p>")),
            fragments.text("m", Update(tail="c")),
            fragments.reasoning("m", "thinking"),
            fragments.reasoned("m", "Thought for 2 s"),
            fragments.waiting("m", "Model is loading, about 9 s"),
            fragments.placed_call(writing, 0, Markup("<p>Looking.</p>")),  # a tool call, after the text so far
            fragments.changed_call(writing, 0),  # and when it ended
        ]
    targets = {target for fragment in sent for target in TARGET.findall(fragment)}
    assert targets == {"open-m", "reasoning-m", "reasoning-summary-m", "wait-m", "call-m-0"}
    assert all(f'id="{target}"' in page for target in targets)


def test_text_in_a_fragment_is_escaped(app):
    fragments = Fragments(app)
    assert fragments.reasoning("m", "<script>x</script>") == (
        '<span hx-swap-oob="beforeend:#reasoning-m">&lt;script&gt;x&lt;/script&gt;</span>'
    )
    assert "<b>" not in fragments.text("m", Update(tail="<b>bold</b>"))
    assert 'id="open-&lt;b&gt;"' in fragments.text("<b>", Update(open="<p>x</p>"))


def test_text_of_a_followed_answer_read_past_a_tool_calls_place_is_cut_there_for_its_block(app, tab):
    """A tab that follows an answer from the store may read the text before a call and after it at once: the
    call's block goes between them, as in the tab that writes it."""
    view = tab.socket.view
    answer = Message("m", view.conversation.id, "assistant", "", status="streaming")
    call = {"id": "1", "name": "web__echo", "arguments": "{}", "result": "hi", "status": "done", "at": 8}
    answer.meta["tool_calls"] = [call]
    before = len(tab.ws.sent)
    with app.app_context():
        assert view.send_followed(answer, [(False, "Looking.\n\nFound it.")])
    sent = tab.ws.sent[before:]
    (placed,) = [number for number, fragment in enumerate(sent) if 'class="tool-call done"' in fragment]
    assert "<p>Looking.</p>\n<details" in sent[placed]
    assert not any("Found" in fragment for fragment in sent[:placed]) and "Found it." in "".join(sent[placed:])
