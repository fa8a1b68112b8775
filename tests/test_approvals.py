"""Tool calls of an MCP server with "trust": "ask" wait on a card for their owner's yes: Run once runs the call,
Deny tells the model, Always remembers the tool for the owner (revocable in Settings), a card left unanswered is
denied, Stop ends the answer; the card is answered once from any tab, host or page without JavaScript, by its
owner alone. The fake router calls the tools and the real fake MCP server runs them."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from chatbot.chat import answer_writer, approvals
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.chat.running import STALE_SECONDS, is_abandoned, settle_abandoned
from chatbot.services import mcp_client
from chatbot.services.inference import Backend, Parameters
from chatbot.services.tool_servers import ToolServer
from chatbot.stores.conversations import Message, new_id
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.fakes.websocket import SAID, SocketTab
from tests.helpers import Recorder, csrf, new_store, open_chat, post, sign_in, sign_up
from tests.servers import FINISHED, ChatClient, GunicornApp, act, read_until
from tests.test_store import make_store, postgres_url, sqlite_path  # noqa: F401 (the store suite's fixtures)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ECHO = ("call_1", "web__echo", '{"text": "hi", "times": 2}')
CARD = re.compile(r'name="card" value="([^"]+)"')


@pytest.fixture(autouse=True)
def fresh_sessions():
    yield
    mcp_client.forget_connections()


def settings(fake, mcp, **fields) -> ReplySettings:
    backend = Backend(api="chat", url=fake.url + "/v1", model_id=MODEL, token=TOKEN)
    return ReplySettings(
        backend=backend, parameters=Parameters(), tool_servers=(ToolServer("web", "ask", url=mcp.url),), **fields
    )


class Answering:
    """An answer written in a thread of its own, as a socket writes it: its `recorder`, and `message` once done."""

    def __init__(self, store, conversation, settings, text="Say hi twice with the tool", cancel=None) -> None:
        self.recorder = Recorder()
        self.message: Message | None = None

        def write() -> None:
            self.message = run_reply(store, conversation, text, settings, self.recorder, cancel)

        self.thread = threading.Thread(target=write, daemon=True)
        self.thread.start()

    def end(self) -> Message:
        self.thread.join(20)
        assert self.message is not None, "the answer did not end"
        return self.message


def waiting_card(store, conversation, seconds: float = 10.0) -> tuple[Message, dict]:
    """The answer being written and the card it waits on, once it does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in store.messages(conversation):
            if message.status == "streaming" and message.meta.get("approval"):
                return message, message.meta["approval"]
        time.sleep(0.02)
    raise AssertionError("no card waits")


def test_a_call_of_an_ask_server_waits_on_a_card_and_run_once_runs_it(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["The tool said hi hi."])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    assert (card["tool"], card["arguments"]) == ("web.echo", '{\n  "text": "hi",\n  "times": 2\n}')
    time.sleep(0.3)
    assert mcp_log.logged() == [] and len(fake.requests) == 1  # nothing is called before the yes
    approvals.answer(store, conversation, message.id, card["id"], approvals.ONCE)
    done = answering.end()
    assert (done.status, done.content) == ("done", "The tool said hi hi.")
    assert done.meta["tool_calls"][0]["status"] == "done" and "approval" not in done.meta
    assert mcp_log.logged() == ["echo hi"]
    assert answering.recorder.kinds().count("asking") == 2  # shown, then taken away
    with pytest.raises(approvals.NotWaiting):  # answered once
        approvals.answer(store, conversation, message.id, card["id"], approvals.DENY)
    assert store.records(approvals.ANSWERS) == []  # nothing is left of the card


def test_the_card_never_shows_a_secret_the_model_put_in_the_arguments(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", json.dumps({"text": f"my token is {TOKEN}"}))])
    fake.reply(tokens=["Denied."])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    assert TOKEN not in card["arguments"] and card["arguments"].startswith('{\n  "text": "my token is ')
    approvals.answer(store, conversation, message.id, card["id"], approvals.DENY)
    assert answering.end().status == "done"


def test_deny_tells_the_model_the_user_declined_and_the_call_is_not_made(fake, mcp_log):
    fake.reply(tokens=["Let me look."], tool_calls=[ECHO])
    fake.reply(tokens=["Fine, I will not."])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    approvals.answer(store, conversation, message.id, card["id"], approvals.DENY)
    done = answering.end()
    (record,) = done.meta["tool_calls"]
    assert (record["status"], record["result"]) == ("denied", "The user declined this call.")
    assert fake.requests[-1].json["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "The user declined this call.",
    }
    assert done.content == "Let me look.\n\nFine, I will not." and mcp_log.logged() == []


def test_always_runs_later_calls_of_that_tool_without_asking_until_it_is_revoked(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=[], tool_calls=[("call_2", "web__echo", '{"text": "again"}')])  # the same tool: not asked
    fake.reply(tokens=["Twice."])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    approvals.answer(store, conversation, message.id, card["id"], approvals.ALWAYS)
    assert [r["status"] for r in answering.end().meta["tool_calls"]] == ["done", "done"]
    assert answering.recorder.kinds().count("asking") == 2 and mcp_log.logged() == ["echo hi", "echo again"]
    assert approvals.always_allowed(store, "alice") == ["web.echo"]
    assert approvals.always_allowed(store, "bob") == []  # kept per owner
    approvals.revoke(store, "alice", "web.echo")
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Asked again."])
    again = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    approvals.answer(store, conversation, message.id, card["id"], approvals.ONCE)
    assert again.end().content == "Asked again."


def test_always_holds_for_the_server_it_was_given_to_not_for_another_given_its_name():
    from chatbot.services.mcp_client import ServerTool
    from chatbot.services.tools import OfferedTool

    store, _ = new_store()
    echo = ServerTool("web", "echo", "", {})
    given = OfferedTool("web__echo", ToolServer("web", "ask", url="https://search.example.org/mcp"), echo)
    renewed_key = OfferedTool("web__echo", ToolServer("web", "ask", url=given.server.url, headers={"K": "2"}), echo)
    repointed = OfferedTool("web__echo", ToolServer("web", "ask", url="https://elsewhere.example/mcp"), echo)
    started = OfferedTool("web__echo", ToolServer("web", "ask", command="web-tools", transport="stdio"), echo)
    approvals.allow_always(store, "alice", given)
    approvals.allow_always(store, "alice", given)  # one record per owner and tool: no list to lose a yes from
    assert approvals.allowed_always(store, "alice", given) and approvals.allowed_always(store, "alice", renewed_key)
    assert not approvals.allowed_always(store, "alice", repointed) and not approvals.allowed_always(
        store, "alice", started
    )
    assert not approvals.allowed_always(store, "bob", given)
    assert approvals.always_allowed(store, "alice") == ["web.echo"]
    approvals.revoke(store, "alice", "web.echo")
    assert not approvals.allowed_always(store, "alice", given) and approvals.always_allowed(store, "alice") == []


def test_a_person_with_three_answers_waiting_on_cards_is_not_asked_a_fourth_time(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Could not ask."])
    store, conversation = new_store()
    for slot in range(approvals.CARDS_PER_PERSON):  # three answers of hers wait, each holding a writer's thread
        store.create_record(approvals.WAITING, f"{conversation.owner} {slot}", {"until": time.time() + 600})
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message = answering.end()  # at once: no fourth thread held for minutes
    (record,) = message.meta["tool_calls"]
    assert record["status"] == "denied" and "3 other answers of this user already wait" in record["result"]
    assert "asking" not in answering.recorder.kinds() and mcp_log.logged() == []
    store.delete_record(approvals.WAITING, f"{conversation.owner} 0")  # one of them answered: a card again
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Asked."])
    again = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    approvals.answer(store, conversation, message.id, card["id"], approvals.DENY)
    assert again.end().content == "Asked." and store.load_record(approvals.WAITING, f"{conversation.owner} 0") is None


def test_a_card_left_unanswered_is_denied_and_the_model_and_the_chat_say_so(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Nobody answered."])
    store, conversation = new_store()
    done = Answering(store, conversation, settings(fake, mcp_log, tool_approval_minutes=0.005)).end()
    (record,) = done.meta["tool_calls"]
    said = "The user did not answer within 0.005 minutes, so this call was not made."
    assert (record["status"], record["result"], done.content) == ("denied", said, "Nobody answered.")
    assert fake.requests[-1].json["messages"][-1]["content"] == said and mcp_log.logged() == []


def test_stop_while_a_card_waits_ends_the_answer_and_the_call_is_never_made(fake, mcp_log, monkeypatch):
    """Stop asked through the store, as another tab, worker or host asks it; the answer stays alive meanwhile."""
    monkeypatch.setattr(answer_writer, "HEARTBEAT_SECONDS", 0.3)
    fake.reply(tokens=["Looking."], tool_calls=[ECHO])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    message, card = waiting_card(store, conversation)
    time.sleep(1.0)
    waiting = store.read_message(conversation, message.id)
    assert time.time() - waiting.meta["saved_at"] < 0.6 and not is_abandoned(waiting)
    assert waiting.content == "Looking."
    store.request_stop(message.id)
    stopped = answering.end()
    assert stopped.status == "stopped" and stopped.meta["tool_calls"][0]["status"] == "not run"
    assert len(fake.requests) == 1 and mcp_log.logged() == []
    with pytest.raises(approvals.NotWaiting):
        approvals.answer(store, conversation, message.id, card["id"], approvals.ONCE)


def test_a_card_of_a_chat_deleted_meanwhile_stops_waiting(fake, mcp_log, monkeypatch):
    monkeypatch.setattr(answer_writer, "HEARTBEAT_SECONDS", 0.3)
    fake.reply(tokens=[], tool_calls=[ECHO])
    store, conversation = new_store()
    answering = Answering(store, conversation, settings(fake, mcp_log))
    waiting_card(store, conversation)
    store.delete_conversation(conversation)
    started = time.monotonic()
    assert answering.end().status == "stopped" and time.monotonic() - started < 2
    assert len(fake.requests) == 1 and mcp_log.logged() == []


def test_a_card_whose_writer_went_away_is_settled_with_its_answer_and_answers_nothing():
    store, conversation = new_store()
    answer = Message(new_id(), conversation.id, "assistant", "Let me look.", status="streaming")
    answer.meta = {"approval": {"id": "card-1", "tool": "web.echo", "arguments": "{}", "until": time.time() + 60}}
    answer.meta["saved_at"] = time.time() - STALE_SECONDS  # its worker stopped while the card waited
    store.add_message(answer)
    assert settle_abandoned(store, store.read_message(conversation, answer.id))
    settled = store.read_message(conversation, answer.id)
    assert settled.status == "error" and "approval" not in settled.meta
    with pytest.raises(approvals.NotWaiting):
        approvals.answer(store, conversation, answer.id, "card-1", approvals.ONCE)


def test_a_page_without_javascript_waits_for_the_answer_past_its_card_a_bounded_time():
    store, conversation = new_store()
    answer = Message(new_id(), conversation.id, "assistant", "Still writing.", status="streaming")
    answer.meta = {"saved_at": time.time() + 3600}  # its writer goes on, long after the card was answered
    store.add_message(answer)
    started = time.monotonic()
    approvals.wait_past(store, conversation, answer.id, "card-1", seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 2  # without a deadline it waited for the whole rest of the answer


def test_a_card_is_answered_once_whoever_answers_first_on_any_worker(make_store):  # noqa: F811
    """Eight answers at once through two stores on one backend, as two hosts: one counts, the others are told."""
    first, second = make_store(), make_store()
    conversation = first.create_conversation("alice")
    answer = Message(new_id(), conversation.id, "assistant", "", status="streaming")
    answer.meta["approval"] = {"id": "card-1", "tool": "web.echo", "arguments": "{}", "until": time.time() + 60}
    first.add_message(answer)
    taken: list[str] = []

    def press(store, given: str) -> None:
        try:
            approvals.answer(store, conversation, answer.id, "card-1", given)
            taken.append(given)
        except approvals.NotWaiting:
            pass

    given = [approvals.ONCE, approvals.DENY, approvals.ALWAYS, approvals.DENY] * 2
    pressing = [threading.Thread(target=press, args=((first, second)[n % 2], g)) for n, g in enumerate(given)]
    for thread in pressing:
        thread.start()
    for thread in pressing:
        thread.join()
    assert len(taken) == 1
    assert second.load_record(approvals.ANSWERS, f"{answer.id} card-1") == {"answer": taken[0]}
    with pytest.raises(approvals.NotWaiting):  # a card it does not wait on
        approvals.answer(second, conversation, answer.id, "card-2", approvals.ONCE)
    with pytest.raises(ValueError):
        approvals.answer(second, conversation, answer.id, "card-1", "yes please")


@pytest.fixture
def ask_app(make_app, fake, mcp_log):
    """The app with accounts, on the fake router, with the fake MCP server at its default trust (ask)."""
    servers = json.dumps([{"name": "web", "url": mcp_log.url}])
    return make_app(API_URL=fake.url + "/v1", MODEL_ID=MODEL, MCP_SERVERS=servers, INFERENCE_API="chat")


def test_over_the_socket_the_card_follows_to_another_tab_and_is_answered_once(ask_app, fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Both tabs saw it."])
    store = ask_app.extensions["chat_store"]
    conversation = store.create_conversation("alice")
    tab = SocketTab(ask_app, conversation)
    later = None
    try:
        shown = tab.ws.wait_for("The model wants to call", after=tab.send("send", message="Echo hi"))
        assert "<code>web.echo</code>" in shown and "&#34;text&#34;: &#34;hi&#34;" in shown
        later = SocketTab(ask_app, conversation)  # a reloaded tab, or one on another worker: the card as saved
        assert "The model wants to call" in later.ws.wait_for('hx-swap-oob="true"')
        message, card = waiting_card(store, conversation)
        before = later.send("approve", message_id=message.id, card=card["id"], decision="once")
        ended = FINISHED.search(later.ws.wait_for(FINISHED, after=before))
        assert ended is not None and ended[2] == "done"
        assert FINISHED.search(tab.ws.wait_for(FINISHED)) is not None
        assert mcp_log.logged() == ["echo hi"]
        said = SAID.search(tab.act("approve", message_id=message.id, card=card["id"], decision="deny"))
        assert said is not None and said["words"].startswith("That tool call was answered already")
    finally:
        tab.close()
        if later is not None:
            later.close()


def test_a_tab_following_an_answer_shows_its_card_when_it_comes_and_takes_it_away_when_answered(ask_app, fake):
    fake.reply(tokens=[f" w{n}" for n in range(20)], delay=0.05, tool_calls=[ECHO])
    fake.reply(tokens=["Done."], first_delay=1.5)  # the card goes before the answer ends
    store = ask_app.extensions["chat_store"]
    conversation = store.create_conversation("alice")
    tab = SocketTab(ask_app, conversation)
    later = None
    try:
        tab.ws.wait_for("w1", after=tab.send("send", message="Count, then echo"))
        later = SocketTab(ask_app, conversation)  # follows the answer before it calls
        later.ws.wait_for("w1")
        card = re.compile(r'<div id="approval-[\w-]+" class="approval" hx-swap-oob="true">\s*<form')
        assert "The model wants to call" in later.ws.wait_for(card)
        message, shown = waiting_card(store, conversation)
        approvals.answer(store, conversation, message.id, shown["id"], approvals.ONCE)
        gone = re.compile(r'<div id="approval-[\w-]+" class="approval" hx-swap-oob="true">\s*</div>')
        later.ws.wait_for(gone)
        assert FINISHED.search(later.ws.wait_for(FINISHED))[2] == "done"
    finally:
        tab.close()
        if later is not None:
            later.close()


def test_stop_in_the_tab_while_its_card_waits_ends_the_answer_and_takes_the_card_away(ask_app, fake, mcp_log):
    fake.reply(tokens=["Looking."], tool_calls=[ECHO])
    tab = SocketTab(ask_app, ask_app.extensions["chat_store"].create_conversation("alice"))
    try:
        tab.ws.wait_for("The model wants to call", after=tab.send("send", message="Echo hi"))
        ended = FINISHED.search(tab.act("stop"))
        assert ended is not None and ended[2] == "stopped" and "The model wants to call" not in ended.string
        assert len(fake.requests) == 1 and mcp_log.logged() == []
    finally:
        tab.close()


def test_without_javascript_the_card_is_a_form_and_the_page_comes_back_with_the_answer(ask_app, fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "<img src=x onerror=alert(1)>"}')])
    fake.reply(tokens=["Echoed."])
    client = ask_app.test_client()
    sign_up(client, "alice")
    chat = open_chat(client)
    sent = client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo"})
    assert sent.status_code == 302  # back while the card waits, not when it is answered
    page = client.get(chat).text
    assert "The model wants to call <code>web.echo</code> with" in page and "<img src=x" not in page
    assert "&#34;text&#34;: &#34;&lt;img src=x onerror=alert(1)&gt;&#34;" in page
    assert all(f'value="{decision}"' in page for decision in ("once", "always", "deny"))
    action = re.search(r'action="(/c/[^"]+/approval)"', page).group(1)
    card = CARD.search(page).group(1)
    assert client.post(action, data={"card": card, "decision": "once"}).status_code == 400  # no CSRF token
    answered = client.post(action, data={"csrf_token": csrf(page), "card": card, "decision": "once"})
    assert answered.status_code == 302
    page = client.get(chat).text
    assert "Echoed." in page and '<details class="tool-call done" id="call-' in page
    assert "The model wants to call" not in page
    again = client.post(action, data={"csrf_token": csrf(page), "card": card, "decision": "deny"})
    assert again.status_code == 409 and "That tool call was answered already" in again.text


def test_the_card_shows_invisible_and_bidi_characters_as_escapes_and_the_length_of_long_values(ask_app, fake):
    arguments = json.dumps({"text": "invoice\u202efdp.exe\u200b", "note": "x" * 5000})
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", arguments)])
    client = ask_app.test_client()
    sign_up(client, "alice")
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo"})
    page = client.get(chat).text
    assert "\u202e" not in page and "\u200b" not in page  # the override would show "exe.pdf" reversed
    assert "invoice\\u202efdp.exe\\u200b" in page
    assert "<code>note</code> is 5,000 characters long." in page


def test_a_page_left_on_a_card_shows_after_a_reload_that_the_call_was_denied_for_no_answer(make_app, fake, mcp_log):
    servers = json.dumps([{"name": "web", "url": mcp_log.url}])
    app = make_app(API_URL=fake.url + "/v1", MODEL_ID=MODEL, MCP_SERVERS=servers, TOOL_APPROVAL_MINUTES=0.01)
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Nobody said yes."])
    client = app.test_client()
    sign_up(client, "alice")
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo"})
    assert "The model wants to call" in client.get(chat).text
    deadline = time.monotonic() + 10
    while "message assistant done" not in (page := client.get(chat).text):  # its text shows before it ends
        assert time.monotonic() < deadline, "the card was not denied"
        time.sleep(0.1)
    assert "Nobody said yes." in page
    assert '<details class="tool-call denied" id="call-' in page and "The model wants to call" not in page
    assert " · The user did not answer within 0.01 minutes, so this call was not made.</summary>" in page


def test_only_the_owner_of_the_chat_answers_its_card_and_always_is_revocable_in_settings(ask_app, fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Done."])
    alice, bob = ask_app.test_client(), ask_app.test_client()
    sign_up(alice, "alice")  # the first account: the admin
    sign_up(bob, "bob")
    post(alice, "/admin/accounts/bob", action="approve")
    sign_in(bob, "bob")
    chat = open_chat(alice)
    alice.post(f"{chat}/messages", data={"csrf_token": csrf(alice.get(chat).text), "message": "Echo"})
    page = alice.get(chat).text
    action, card = re.search(r'action="(/c/[^"]+/approval)"', page).group(1), CARD.search(page).group(1)
    bobs = bob.get("/", follow_redirects=True).text
    refused = bob.post(action, data={"csrf_token": csrf(bobs), "card": card, "decision": "always"})
    assert refused.status_code == 404 and mcp_log.logged() == []
    alice.post(action, data={"csrf_token": csrf(page), "card": card, "decision": "always"})
    page = alice.get(chat).text
    assert "Done." in page and "<code>web.echo</code>" in page  # in Settings, with its Revoke button
    revoke = re.search(r'action="(/c/[^"]+/tools/revoke)"', page).group(1)
    assert bob.post(revoke, data={"csrf_token": csrf(bobs), "tool": "web.echo"}).status_code == 404
    assert alice.post(revoke, data={"csrf_token": csrf(page), "tool": "web.echo"}).status_code == 302
    assert "<code>web.echo</code>" not in alice.get(chat).text


def test_on_two_instances_sharing_redis_a_card_shown_on_both_is_answered_once(tmp_path, fake, mcp_log):
    """A tab on one instance asks; a tab of the same session opened on the other shows the card; its socket and a form
    post on the first answer at once: one answer counts, the other is told, and the answer goes on as it said."""
    url = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '13')}"
    environment = app_environment(
        tmp_path,
        API_URL=fake.url + "/v1",
        INFERENCE_API="chat",
        MODEL_ID=MODEL,
        HF_API_TOKEN=TOKEN,
        READ_TIMEOUT="5",
        CHAT_STORE_URL=url,
        MCP_SERVERS=json.dumps([{"name": "web", "url": mcp_log.url}]),
    )
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Answered once."])
    with GunicornApp({**environment, "WORKER_CLASS": "gevent"}) as first, GunicornApp(environment) as second:
        here = ChatClient(first.url)
        asking, following = here.connect(), None
        try:
            act(asking, "send", message="Echo hi")
            read_until(asking, [], "The model wants to call")
            following = here.via(second.url).connect()  # a tab opened meanwhile, on the other instance
            shown = read_until(following, [], "The model wants to call")[-1]
            message_id, card = re.search(r'/messages/([\w-]+)/approval"', shown).group(1), CARD.search(shown).group(1)
            act(following, "approve", message_id=message_id, card=card, decision="once")
            posted = here.post_form(f"/messages/{message_id}/approval", card=card, decision="deny")
            frames = read_until(following, [], re.compile(f"{FINISHED.pattern}|{SAID.pattern}"))
            if SAID.search(frames[-1]):  # the form post came first
                assert posted.status_code == 200 and "Answered once." in posted.text
                frames = read_until(following, [], FINISHED)
            else:
                assert posted.status_code == 409 and "That tool call was answered already" in posted.text
        finally:
            asking.close()
            if following is not None:
                following.close()
    (record,) = [m for m in fake.requests[-1].json["messages"] if m["role"] == "tool"]
    denied = record["content"] == approvals.DECLINED
    assert mcp_log.logged() == ([] if denied else ["echo hi"]) and FINISHED.search(frames[-1])[2] == "done"
    assert denied == bool(SAID.search("".join(frames)))
