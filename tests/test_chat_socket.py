"""The chat socket in this process, on a fake WebSocket and the in-memory store (no gunicorn): what a tab is sent
while an answer is written here, stopped, followed from another tab, or left for another branch."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from flask import render_template
from markupsafe import Markup

from chatbot.chat import tool_call_places, tool_calls
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind
from chatbot.chat.live_markdown import Update
from chatbot.stores.conversations import Message
from chatbot.web.socket.fragments import Fragments
from tests.fakes.websocket import SAID, SocketTab
from tests.servers import ANSWER_TEXT, FINISHED, answer_body, finished_answer, shown_answer

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


def long_markdown(sections: int) -> list[str]:
    """An answer of about 70 tokens a section: a paragraph, a list, a short code block and a table each."""
    tokens = []
    for n in range(sections):
        tokens += [f"Section {n}: ", *(f"word{n}x{i} " for i in range(60)), "\n\n", f"- item {n}a\n", f"- **b{n}**\n\n"]
        tokens += ["```python\n", f"x = {n}\n", "```\n\n", "| a | b |\n", "|---|---|\n", f"| {n} | <{n}> |\n\n"]
    return [*tokens, "The end."]


REFERENCE_LATER = ["See [ref].\n\n", "More.\n\n", "[ref]: https://example.org\n\n", "And [ref] again.\n"]


def test_the_end_of_an_answer_sends_its_body_again_only_when_the_tab_shows_it_otherwise(tab, store, fake):
    conversation = tab.socket.view.conversation
    conversation.settings["parameters"] = {"max_new_tokens": 5000}
    store.update_conversation(conversation)
    tokens = long_markdown(57)
    assert 3_990 <= len(tokens) <= 4_010
    fake.reply(tokens=tokens, delay=0.0005)
    before = tab.send("send", message="Write a lot")
    ended = tab.ws.wait_for(FINISHED, after=before, seconds=60)
    answer = store.messages(conversation)[-1]
    assert answer.status == "done" and answer.content.endswith("The end.") and len(answer.html) > 50_000
    assert len(ended.encode()) < 5_000  # not the ~52 KB of its body again
    assert "word3x7" not in ended and "Section 56" not in ended and "<p>The end.</p>" in ended  # the open block
    assert 'class="stats"' in ended and 'class="message-actions"' in ended and 'id="send-button">Send' in ended
    finished = finished_answer(tab.ws.sent[: tab.ws.sent.index(ended) + 1])
    assert answer_body(finished) == answer.html

    fake.reply(tokens=REFERENCE_LATER, delay=0.05)  # the finished answer links what was shown before [ref]: was read
    ended = FINISHED.search(tab.act("send", message="Link it"))
    whole = tab.ws.sent[-1] if FINISHED.search(tab.ws.sent[-1]) else ""
    assert ended is not None and '<div class="body markdown"><p>See <a href="https://example.org"' in whole
    assert "hx-preserve" not in whole and "#open-" not in whole


def test_a_stopped_answer_ends_with_its_marker_and_keeps_the_part_shown(tab, store, fake):
    fake.reply(tokens=[f"w{n} " if n % 20 else f"w{n}\n\n" for n in range(1, 400)], delay=0.02)
    before = tab.send("send", message="Go on")
    tab.ws.wait_for(re.compile(r'"beforebegin:#open-[\w-]+"><p>w21 '), after=before)  # two paragraphs shown for good
    ended = tab.act("stop")
    stopped = store.messages(tab.socket.view.conversation)[-1]
    assert FINISHED.search(ended)[2] == "stopped" and "Stopped: the answer above is partial." in ended
    assert "w5 " not in ended  # shown already
    finished = finished_answer(tab.ws.sent[: tab.ws.sent.index(ended) + 1])
    assert answer_body(finished) == stopped.html


def test_a_tab_that_follows_an_answer_gets_at_its_end_only_what_it_lacks(app, tab, store, fake):
    fake.reply(tokens=[f"w{n} " if n % 10 else f"w{n}\n\n" for n in range(1, 80)], delay=0.03)
    before = tab.send("send", message="Count")
    tab.ws.wait_for(ANSWER_TEXT, after=before)
    later = SocketTab(app, tab.socket.view.conversation)
    try:
        ended = later.ws.wait_for(FINISHED)
        answer = store.messages(tab.socket.view.conversation)[-1]
        assert "w1 " not in ended and "w15 " not in ended  # shown when it caught up, and then as it was read
        finished = finished_answer(later.ws.sent[: later.ws.sent.index(ended) + 1])
        assert answer_body(finished) == answer.html
    finally:
        later.close()


def test_a_tab_back_on_the_branch_of_an_answer_being_written_gets_it_whole_then_only_what_it_lacks(tab, store, fake):
    conversation = tab.socket.view.conversation
    fake.reply(tokens=["One"])
    tab.act("send", message="Count")
    fake.reply(tokens=[f"w{n} " if n % 10 else f"w{n}\n\n" for n in range(1, 60)], delay=0.05)
    before = tab.send("regenerate")
    tab.ws.wait_for("w12", after=before)
    first_answer, regenerated = store.messages(conversation)[1:]
    tab.act("switch", message_id=first_answer.id)
    back = tab.ws.sent.index(tab.act("switch", message_id=regenerated.id))
    resumed = tab.ws.wait_for(f'<article id="msg-{regenerated.id}" class="message assistant streaming"', after=back + 1)
    ended = tab.ws.wait_for(FINISHED, after=back)
    answer = store.messages(conversation)[2]
    assert "w1 " in resumed and "w1 " not in ended  # whole when shown again, then not again at its end
    finished = finished_answer(tab.ws.sent[back : tab.ws.sent.index(ended) + 1])
    assert answer_body(finished) == answer.html


def test_a_followed_answer_whose_call_ended_with_it_ends_with_that_calls_block_anew_not_its_text(app, tab, store):
    """A tab that follows an answer from the store may hear that a call ended only with the answer (its writer went
    away while it ran): that call's block is sent again, in place of the one shown, and the text is not."""
    view = tab.socket.view
    question = store.add_message(Message("q", view.conversation.id, "user", "Look"))
    answer = Message("a", view.conversation.id, "assistant", "", status="streaming", parent_id=question.id)
    store.add_message(answer)
    running = {"id": "1", "name": "web__echo", "arguments": "{}", "result": "", "status": "running", "at": 8}
    with app.app_context():
        view.shown_last = answer.id
        view.caught_up(answer, "")
        answer.meta["tool_calls"] = [running]  # made once the text read so far was said
        assert view.send_followed(answer, [(False, "Looking.")])
        ended = replace(answer, content="Looking.", status="error", error={"message": "Gone", "kind": "unknown"})
        ended.meta = {"tool_calls": [tool_calls.interrupted(running)]}
        ended.html = tool_call_places.rendered(ended.content, ended.meta["tool_calls"])
        before = len(tab.ws.sent)
        view.on_event(Event(Kind.FINISHED, ended))
    (finished,) = tab.ws.sent[before:]
    assert FINISHED.search(finished)[2] == "error" and "Looking." not in finished
    assert '<details class="tool-call failed" id="call-a-0" hx-swap-oob="true">' in finished
    assert "The chat stopped while this call ran" in finished and "Gone" in finished
    body = answer_body(finished_answer(tab.ws.sent))
    assert body.startswith('<p>Looking.</p>\n<details class="tool-call failed" id="call-a-0">')
    assert "Calling" not in body and "Called web__echo" in body


def test_an_answer_that_reasoned_ends_without_its_reasoning_or_text_sent_again(tab, store, fake):
    thinking = ["<think>", "I ponder", " this", " deeply,", " at length.", "</think>"]
    fake.reply(tokens=[*thinking, "First part.\n\n", "Second part.\n\n", "The end."], delay=0.05)
    before = tab.send("send", message="Think")
    ended = tab.ws.wait_for(FINISHED, after=before)
    answer = store.messages(tab.socket.view.conversation)[-1]
    assert answer.meta["reasoning"] == "I ponder this deeply, at length."
    assert "Thought for" in ended and "ponder" not in ended and "First part." not in ended
    finished = finished_answer(tab.ws.sent[: tab.ws.sent.index(ended) + 1])
    assert '<div class="plain">I ponder this deeply, at length.</div>' in finished
    assert answer_body(finished) == answer.html


def test_an_answer_that_ends_just_after_its_tab_drew_its_branch_anew_is_sent_whole(app, tab, store):
    """The switch drew the answer as saved, which may lag what was streamed: its end cannot tell, so sends it all."""
    view = tab.socket.view
    question = store.add_message(Message("q", view.conversation.id, "user", "Count"))
    answer = Message("a", view.conversation.id, "assistant", "", status="streaming", parent_id=question.id)
    store.add_message(answer)
    with app.app_context():
        view.shown_last = answer.id
        view.caught_up(answer, "")
        assert view.send_followed(answer, [(False, "One.\n\nTwo.\n\nThree")])
        view.switch(Tree(store.messages(view.conversation)), answer.id, answer)
        ended = replace(answer, content="One.\n\nTwo.\n\nThree.", status="done")
        ended.html = tool_call_places.rendered(ended.content, [])
        view.on_event(Event(Kind.FINISHED, ended))
    finished = tab.ws.sent[-1]
    assert FINISHED.search(finished) and "hx-preserve" not in finished
    assert '<div class="body markdown"><p>One.</p>\n<p>Two.</p>\n<p>Three.</p>\n</div>' in finished
