"""Share links: a read-only snapshot at an unguessable link, made and revoked by the owner, optionally expiring;
the shared page shows the snapshot alone, is not indexed, works without JavaScript, and can be copied."""

import json
import re
import time
from types import SimpleNamespace

import pytest

from chatbot.chat import sharing, transfer
from chatbot.chat.branches import Tree
from chatbot.chat.sharing import KIND
from chatbot.services import mcp_client
from tests.helpers import csrf, open_chat, post, sign_in, sign_up

HOSTILE = '<img src=x onerror="window.hacked=1"> **bold**'


def share_link(client, chat, expires="never"):
    made = client.post(f"{chat}/shares", data={"csrf_token": csrf(client.get(chat).text), "expires": expires})
    assert made.status_code == 201
    return re.search(r"can read the chat as it is now: http://localhost(/s/[\w.-]+)", made.text).group(1)


def chat_with_an_answer(app, fake, question, answer):
    """An owner's browser and its chat, once `question` has been answered with `answer`."""
    owner = app.test_client()
    chat = open_chat(owner)
    fake.reply(tokens=[answer])
    owner.post(f"{chat}/messages", data={"csrf_token": csrf(owner.get(chat).text), "message": question})
    return owner, chat


def test_a_link_shows_the_snapshot_alone_to_anyone(make_app, fake):
    app = make_app(AUTH="none")
    owner = app.test_client()
    chat = open_chat(owner)
    fake.reply(tokens=["Here: ", HOSTILE])
    owner.post(f"{chat}/messages", data={"csrf_token": csrf(owner.get(chat).text), "message": "Show " + HOSTILE})
    link = share_link(owner, chat)
    assert len(link.rsplit("/", 1)[1]) >= 32  # 24 random bytes
    fake.reply(tokens=["After the snapshot"])
    owner.post(f"{chat}/messages", data={"csrf_token": csrf(owner.get(chat).text), "message": "Later"})

    page = app.test_client().get(link)  # someone else, another browser
    assert page.status_code == 200 and page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert "Here: " in page.text and "<strong>bold</strong>" in page.text and "After the snapshot" not in page.text
    assert "<img" not in page.text.replace("&lt;img", "")  # escaped, never markup
    for absent in ("ws-connect", 'class="sidebar"', "conversation-list", "Edit</summary>", chat):
        assert absent not in page.text


def test_revoked_expired_and_deleted_links_show_nothing(make_app, fake, monkeypatch):
    app = make_app(AUTH="none")
    owner, chat = chat_with_an_answer(app, fake, "Hello", "Hi")
    revoked, day, kept = share_link(owner, chat), share_link(owner, chat, "1"), share_link(owner, chat)
    page = owner.get(chat).text
    assert page.count("Share link ") == 3 and " UTC)" in page  # the day's expiry is shown
    token = revoked.rsplit("/", 1)[1]
    owner.post(f"{chat}/shares/{token}/revoke", data={"csrf_token": csrf(page)})
    assert app.test_client().get(revoked).status_code == 404
    now = time.time
    monkeypatch.setattr(
        sharing, "time", SimpleNamespace(**{**vars(time), "time": lambda: now() + 86401})
    )  # a day later
    assert app.test_client().get(day).status_code == 404
    assert app.test_client().get(kept).status_code == 200
    assert owner.get(chat).text.count("Share link ") == 1  # and the page no longer lists it
    stranger = app.test_client()
    open_chat(stranger)
    kept_token = kept.rsplit("/", 1)[1]
    stranger_token = csrf(stranger.get("/", follow_redirects=True).text)
    assert stranger.post(f"{chat}/shares/{kept_token}/revoke", data={"csrf_token": stranger_token}).status_code == 404
    owner.post(f"{chat}/delete", data={"csrf_token": csrf(owner.get(chat).text)})
    assert app.test_client().get(kept).status_code == 404  # deleted with its conversation


def test_whoever_opens_a_link_can_start_their_own_copy(make_app, fake):
    app = make_app()  # accounts: the page is public, a copy needs an account
    ada, bob = app.test_client(), app.test_client()
    sign_up(ada, "ada")
    chat = ada.get("/").location
    fake.reply(tokens=["Porto by train"])
    post(ada, f"{chat}/messages", message="Trip?")
    link = share_link(ada, chat)
    anonymous = app.test_client()
    shown = anonymous.get(link)
    assert shown.status_code == 200 and "Sign in</a> to start your own copy" in shown.text
    sign_up(bob, "bob")
    post(ada, "/admin/accounts/bob", action="approve")
    sign_in(bob, "bob")
    copied = bob.post(f"{link}/copy", data={"csrf_token": csrf(bob.get(link).text)})
    assert copied.status_code == 302 and copied.location != chat
    page = bob.get(copied.location).text
    assert "Porto by train" in page and "Trip?" in page
    assert bob.get(chat).status_code == 404  # his copy, not ada's chat
    assert "shares" not in ada.get(f"{chat}/export.json").text  # an export carries no links


def test_an_empty_chat_is_not_shared_and_a_link_outlives_a_lower_limit(make_app, fake, tmp_path):
    app = make_app(AUTH="none")
    owner = app.test_client()
    chat = open_chat(owner)
    empty = owner.post(f"{chat}/shares", data={"csrf_token": csrf(owner.get(chat).text), "expires": "never"})
    assert empty.status_code == 400 and "There is nothing to share yet: send a message first." in empty.text
    fake.reply(tokens=["A long answer " * 20])
    owner.post(f"{chat}/messages", data={"csrf_token": csrf(owner.get(chat).text), "message": "Tell me"})
    link = share_link(owner, chat)

    smaller = make_app(AUTH="none", MAX_MESSAGE_CHARS=10)  # the same store, its admin lowered the limit since
    visitor = smaller.test_client()
    page = visitor.get(link)
    assert page.status_code == 200 and "A long answer" in page.text  # as rendered when the link was made
    open_chat(visitor)
    refused = visitor.post(f"{link}/copy", data={"csrf_token": csrf(visitor.get(link).text)})
    assert refused.status_code == 400 and "This shared chat cannot be copied" in refused.text


def owner_of(client):
    with client.session_transaction() as session:
        return session["owner"]


def test_links_made_before_links_were_kept_with_their_chat_still_show_and_are_revoked(make_app, fake):
    app = make_app(AUTH="none")
    owner, chat = chat_with_an_answer(app, fake, "Older", "Kept")
    store = app.extensions["chat_store"]
    conversation = store.get_conversation(owner_of(owner), chat.rsplit("/", 1)[1])
    snapshot = transfer.as_json(conversation, Tree(store.messages(conversation)))
    store.save_record(KIND, "older", {"owner": conversation.owner, "snapshot": snapshot, "expires_at": None})
    conversation.settings["shares"] = [["older", None]]  # as sessions before this one kept their links
    store.update_conversation(conversation)
    assert "Kept" in app.test_client().get("/s/older").text
    page = owner.get(chat).text
    assert page.count("Share link ") == 1
    owner.post(f"{chat}/shares/older/revoke", data={"csrf_token": csrf(page)})
    assert app.test_client().get("/s/older").status_code == 404 and store.load_record(KIND, "older") is None


def make_link(client, chat):
    return client.post(f"{chat}/shares", data={"csrf_token": csrf(client.get(chat).text), "expires": "never"})


def test_links_of_one_snapshot_keep_it_once_and_links_are_limited_per_chat_and_per_person(make_app, fake):
    app = make_app(AUTH="none", SHARE_LINKS_PER_CHAT=3, SHARE_LINKS_PER_PERSON=4)
    owner, chat = chat_with_an_answer(app, fake, "Hello", "Hi " * 1000)
    store, who = app.extensions["chat_store"], owner_of(owner)
    first = share_link(owner, chat)
    kept = store.kept_size(who)
    assert kept > 6000  # the snapshot: its JSON and its page
    links = [first, share_link(owner, chat, "7"), share_link(owner, chat)]
    assert store.kept_size(who) == kept  # the same snapshot, kept once
    refused = make_link(owner, chat)
    assert refused.status_code == 400
    assert "This chat has 3 share links, as many as a chat may have. Revoke one you no longer need" in refused.text
    other = owner.post("/c", data={"csrf_token": csrf(owner.get(chat).text)}).location
    fake.reply(tokens=["Fine"])
    owner.post(f"{other}/messages", data={"csrf_token": csrf(owner.get(other).text), "message": "Else"})
    share_link(owner, other)
    refused = make_link(owner, other)
    assert (
        refused.status_code == 400 and "Your chats have 4 share links, as many as this chat keeps for" in refused.text
    )
    for link in links:
        owner.post(f"{chat}/shares/{link.rsplit('/', 1)[1]}/revoke", data={"csrf_token": csrf(owner.get(chat).text)})
    assert store.kept_size(who) < kept  # the last link of that snapshot took it away
    assert make_link(owner, other).status_code == 201


def test_a_snapshot_counts_in_what_its_owner_may_keep(make_app, fake):
    app = make_app(AUTH="none", FILES_KEPT_MB=0.01)
    owner, chat = chat_with_an_answer(app, fake, "Tell me", "A long answer " * 800)
    refused = make_link(owner, chat)
    assert refused.status_code == 400
    assert re.search(
        r"Your chats keep 0 bytes of attached files and shared snapshots, and with \d+ KB more", refused.text
    )
    assert "Delete chats, or revoke share links, that you no longer need, then make the link again." in refused.text
    assert "Share link 1" not in owner.get(chat).text
    small, small_chat = chat_with_an_answer(app, fake, "Hi", "Hello")
    assert make_link(small, small_chat).status_code == 201


def test_a_link_goes_with_its_chat_when_the_chat_expires(make_app, fake):
    app = make_app(AUTH="none")
    owner, chat = chat_with_an_answer(app, fake, "Hello", "Hi")
    link = share_link(owner, chat)
    store = app.extensions["chat_store"]
    with store._connection() as db:
        db.execute("UPDATE conversations SET updated_at = 0")  # left alone for longer than SESSION_IDLE_DAYS
    store.forget_idle()
    assert app.test_client().get(link).status_code == 404
    assert store.kept_size(owner_of(owner)) == 0


@pytest.fixture
def tool_chat(make_app, mcp_log, fake):
    """The app, an owner's browser and its chat, whose answer called the echo tool of the fake MCP server."""
    servers = json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}])
    app = make_app(
        AUTH="none", API_URL=fake.url + "/v1", MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", MCP_SERVERS=servers
    )
    owner = app.test_client()
    chat = open_chat(owner)
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "private notes"}')])
    fake.reply(tokens=["Echoed."])
    owner.post(f"{chat}/messages", data={"csrf_token": csrf(owner.get(chat).text), "message": "Echo my notes"})
    yield app, owner, chat
    mcp_client.forget_connections()


def test_the_share_form_says_a_chat_has_tool_results_and_the_browser_asks_for_the_box(make_app, fake, tool_chat):
    """With JavaScript or without, the browser posts the form only with the box ticked (`required`)."""
    app, owner, chat = tool_chat
    page = owner.get(chat).text
    assert "This chat's answers called tools: a link shows anyone who has it what they returned." in page
    assert '<input type="checkbox" name="with_tool_results" value="on" required> Share with what its tools' in page
    plain_owner, plain_chat = chat_with_an_answer(app, fake, "Hi", "Hello")
    assert "with_tool_results" not in plain_owner.get(plain_chat).text


def test_a_chat_with_tool_results_is_shared_only_with_the_box_ticked(tool_chat):
    """A post without the box (an old page, or a form without the browser's check) makes no link and says why."""
    app, owner, chat = tool_chat
    refused = owner.post(f"{chat}/shares", data={"csrf_token": csrf(owner.get(chat).text), "expires": "never"})
    assert refused.status_code == 400
    assert "Tick &#34;Share with what its tools returned&#34; if they may read it" in refused.text
    assert "can read the chat as it is now" not in refused.text and "Share link 1" not in refused.text
    made = owner.post(
        f"{chat}/shares",
        data={"csrf_token": csrf(owner.get(chat).text), "expires": "never", "with_tool_results": "on"},
    )
    assert made.status_code == 201
    link = re.search(r"can read the chat as it is now: http://localhost(/s/[\w.-]+)", made.text).group(1)
    shown = app.test_client().get(link).text
    assert "Called web__echo(text: &#34;private notes&#34;)" in shown and "Echoed." in shown
