"""Each tool call shown where it happened in the answer: its place kept with its record, moved with the text when
the answer ends, the text cut there on the page, while it is written (in this tab, a reloaded one and one that
follows over the socket) and after, in exports and imports; calls kept before they had places show above the text."""

from __future__ import annotations

import json
import re
import threading

import pytest

from chatbot.chat import tool_call_places, transfer
from chatbot.chat.branches import Tree
from chatbot.chat.replies import run_reply
from chatbot.services import mcp_client
from chatbot.stores.conversations import Message
from tests.fakes.websocket import SocketTab
from tests.helpers import Recorder, csrf, new_store, open_chat
from tests.servers import FINISHED, answer_body, finished_answer
from tests.test_tool_calls import settings, wait_for

ECHO = ("call_1", "web__echo", '{"text": "<b>hi</b>"}')
HANG = ("call_1", "web__hang", '{"seconds": 1.5}')


@pytest.fixture(autouse=True)
def fresh_sessions():
    yield
    mcp_client.forget_connections()


def record(at: int | None = None, name: str = "web__echo", status: str = "done") -> dict:
    made = {"id": "c", "name": name, "arguments": "{}", "result": "ok", "status": status}
    return made if at is None else {**made, "at": at}


def test_the_text_is_cut_at_each_calls_place_and_calls_made_at_one_place_go_together():
    records = [record(5, "a"), record(5, "b"), record(12, "c")]
    unplaced, groups = tool_call_places.grouped(records)
    assert unplaced == [] and [(place, [n for n, _ in calls]) for place, calls in groups] == [(5, [0, 1]), (12, [2])]
    assert tool_call_places.pieces("First.\n\nSecond.\n\nThird.", groups) == ["First", ".\n\nSeco", "nd.\n\nThird."]
    html = tool_call_places.rendered("Look.\n\nFound it.", [record(5)])
    assert html == f"<p>Look.</p>\n{tool_call_places.CUT}<p>Found it.</p>\n"
    _, shown = tool_call_places.finished(html, [record(5)])
    assert [(str(piece), [n for n, _ in calls]) for piece, calls in shown] == [
        ("<p>Look.</p>\n", [0]),
        ("<p>Found it.</p>\n", []),
    ]


def test_a_place_past_the_text_or_before_an_earlier_one_is_taken_as_the_nearest_that_is_not():
    groups = tool_call_places.grouped([record(8), record(3), record(99)])[1]
    assert tool_call_places.pieces("abcdefghij", groups) == ["abcdefgh", "", "ij", ""]


def test_when_the_answer_ends_the_places_move_with_the_stripped_text_and_stay_within_it():
    said = "\n\n  Looking.\n\nFound it. STOP and more"
    message = Message("m", "c", "assistant", "Looking.\n\nFound it.")
    message.meta["tool_calls"] = [record(12), record(len(said)), record(0), record(None)]
    tool_call_places.settle(message, said)
    assert [r.get("at") for r in message.meta["tool_calls"]] == [8, 19, 0, None]
    assert message.html.count(tool_call_places.CUT) == 3


def test_calls_kept_without_a_place_show_above_the_text_as_they_did():
    old = [record(), record(name="web__fail", status="failed")]
    unplaced, shown = tool_call_places.finished("<p>Answer.</p>\n", old)
    assert [n for n, _ in unplaced] == [0, 1] and [(str(html), calls) for html, calls in shown] == [
        ("<p>Answer.</p>\n", [])
    ]
    unplaced, shown = tool_call_places.finished("<p>Made before.</p>\n", [record(3)])  # HTML not cut for them
    assert [n for n, _ in unplaced] == [0] and str(shown[0][0]) == "<p>Made before.</p>\n"


def test_a_call_still_running_when_the_chat_stopped_writing_is_kept_as_failed():
    message = Message("m", "c", "assistant", "Looking.")
    message.meta["tool_calls"] = [record(8, status="running")]
    tool_call_places.settle(message, "Looking.")
    (kept,) = message.meta["tool_calls"]
    assert kept["status"] == "failed" and kept["result"].startswith("The chat stopped while this call ran")


def test_each_call_keeps_where_it_was_made_in_the_answers_text_its_reasoning_apart(fake, mcp_log):
    fake.reply(reasoning=["Let me think."], tokens=["  Checking."], tool_calls=[ECHO])
    fake.reply(tokens=["It said hi."])
    store, conversation = new_store()
    message = run_reply(store, conversation, "Echo", settings(fake, mcp_log), Recorder())
    assert message.content == "Checking.\n\nIt said hi."
    (kept,) = message.meta["tool_calls"]
    assert kept["at"] == len("Checking.") and kept["status"] == "done"
    assert message.html.index("Checking.") < message.html.index(tool_call_places.CUT) < message.html.index("It said")


def test_a_call_is_kept_and_shown_running_at_its_place_while_it_runs(fake, mcp_log):
    fake.reply(tokens=["Looking."], tool_calls=[HANG])
    fake.reply(tokens=["Slept."])
    store, conversation = new_store()
    seen = []

    def listen(event):
        if event.kind == "calling":
            stored = store.read_message(conversation, event.message.id)
            seen.append([(r["status"], r["at"]) for r in stored.meta["tool_calls"]])

    message = run_reply(store, conversation, "Sleep", settings(fake, mcp_log), listen)
    assert seen == [[("running", 8)], [("done", 8)]]  # saved for every tab before the call ends, then its end
    assert message.meta["tool_calls"][0]["at"] == 8 and message.content == "Looking.\n\nSlept."


def web_app(make_app, fake, mcp_log):
    servers = json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}])
    return make_app(
        AUTH="none", API_URL=fake.url + "/v1", MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", MCP_SERVERS=servers
    )


def test_the_page_shows_each_call_between_the_text_before_it_and_after_it_escaped(make_app, fake, mcp_log):
    client = web_app(make_app, fake, mcp_log).test_client()
    fake.reply(tokens=["Checking."], tool_calls=[ECHO])
    fake.reply(tokens=["It said hi."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo"})
    page = client.get(chat).text  # the form post waited for the answer, as without JavaScript
    body = page[page.index('<div class="body markdown">') :]
    block = body.index('<details class="tool-call done" id="call-')
    assert body.index("<p>Checking.</p>") < block < body.index("<p>It said hi.</p>")
    assert "&lt;b&gt;hi&lt;/b&gt;</pre>" in body and "<b>hi</b>" not in page
    exported = client.get(f"{chat}/export.md").text
    assert exported.index("Checking.") < exported.index("> **Tool call · done**") < exported.index("It said hi.")


def test_a_page_reloaded_while_a_call_runs_shows_it_running_at_its_place(make_app, fake, mcp_log):
    app = web_app(make_app, fake, mcp_log)
    client = app.test_client()
    fake.reply(tokens=["Looking."], tool_calls=[HANG])
    fake.reply(tokens=["Slept."])
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    form = {"csrf_token": token, "message": "Sleep"}
    posted = threading.Thread(target=client.post, args=(f"{chat}/messages",), kwargs={"data": form})
    posted.start()
    wait_for(lambda: mcp_log.logged() == ["started"])
    page = client.get(chat).text  # while the form post waits
    posted.join()
    live = page[page.index('<div class="body markdown" id="text-') :]
    running = re.search(r'<details class="tool-call running" id="call-[\w-]+-0">\s*<summary>Calling web__hang', live)
    assert running is not None and live.index("<p>Looking.</p>") < running.start()
    assert "Called web__hang" in client.get(chat).text


def test_an_export_keeps_the_places_and_an_import_keeps_them_within_the_text(fake, mcp_log):
    fake.reply(tokens=["Checking."], tool_calls=[ECHO])
    fake.reply(tokens=["It said hi."])
    store, conversation = new_store()
    run_reply(store, conversation, "Echo", settings(fake, mcp_log), Recorder())
    exported = json.loads(transfer.as_json(conversation, Tree(store.messages(conversation))))
    assert exported["messages"][-1]["meta"]["tool_calls"][0]["at"] == len("Checking.")
    exported["messages"][-1]["meta"]["tool_calls"].append({**record(10_000), "id": "call_2"})
    back = transfer.import_json(store, "alice", json.dumps(exported).encode(), 100_000)
    answer = store.messages(back)[-1]
    assert [r["at"] for r in answer.meta["tool_calls"]] == [len("Checking."), len(answer.content)]
    assert answer.html.index("Checking.") < answer.html.index(tool_call_places.CUT) < answer.html.index("It said")


def test_over_the_socket_a_running_call_is_sent_at_its_place_before_it_ends_and_a_second_tab_sees_it(
    make_app, fake, mcp_log
):
    app = web_app(make_app, fake, mcp_log)
    fake.reply(tokens=["Looking."], tool_calls=[HANG])
    fake.reply(tokens=["Slept", " well."], delay=0.3)
    conversation = app.extensions["chat_store"].create_conversation("alice")
    tab, later = SocketTab(app, conversation), None
    try:
        before = tab.send("send", message="Sleep")
        placed = tab.ws.wait_for("Calling web__hang", after=before)
        assert not any("tool-call done" in fragment or FINISHED.search(fragment) for fragment in tab.ws.sent)
        assert re.search(r'beforebegin:#open-[\w-]+"><p>Looking.</p>\n<details class="tool-call running"', placed)
        later = SocketTab(app, conversation)  # a reloaded tab, or one on another worker
        caught_up = later.ws.wait_for("Calling web__hang")
        assert caught_up.index("<p>Looking.</p>") < caught_up.index('class="tool-call running"')
        for shown in (tab, later):
            changed = shown.ws.wait_for(re.compile(r'<details class="tool-call done" id="call-[\w-]+-0" hx-swap-oob'))
            text_after = shown.ws.wait_for("Slept")
            assert shown.ws.sent.index(changed) < shown.ws.sent.index(text_after)
            ended = shown.ws.sent.index(shown.ws.wait_for(FINISHED))
            finished = finished_answer(shown.ws.sent[: ended + 1])
            assert finished.index("Looking.") < finished.index("Called web__hang") < finished.index("Slept well.")
    finally:
        tab.close()
        if later is not None:
            later.close()


def test_an_answer_stopped_while_a_call_runs_ends_without_its_text_or_that_calls_block_sent_again(
    make_app, fake, mcp_log
):
    app = web_app(make_app, fake, mcp_log)
    fake.reply(tokens=["Looking", " around", " here."], tool_calls=[HANG], delay=0.05)
    tab = SocketTab(app, app.extensions["chat_store"].create_conversation("alice"))
    try:
        before = tab.send("send", message="Sleep")
        tab.ws.wait_for("Calling web__hang", after=before)
        ended = tab.act("stop")
        answer = app.extensions["chat_store"].messages(tab.socket.view.conversation)[-1]
        assert FINISHED.search(ended)[2] == "stopped" and "Looking around here." not in ended
        assert "Calling web__hang" not in ended  # its block was sent anew as the call ended, before
        finished = finished_answer(tab.ws.sent[: tab.ws.sent.index(ended) + 1])
        assert answer_body(finished) == page_body(app, answer)
    finally:
        tab.close()


def page_body(app, answer):
    """The body of `answer` as its chat's page shows it."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["owner"] = "alice"
    page = client.get(f"/c/{answer.conversation_id}").text
    return answer_body(page[page.index(f'<article id="msg-{answer.id}"') :])
