"""Share links: a read-only snapshot at an unguessable link, made and revoked by the owner, optionally expiring;
the shared page shows the snapshot alone, is not indexed, works without JavaScript, and can be copied."""

import re
import time

from chatbot.shares import KIND
from tests.test_accounts import post, sign_in, sign_up
from tests.test_pages import csrf, open_chat

HOSTILE = '<img src=x onerror="window.hacked=1"> **bold**'


def share_link(client, chat, expires="never"):
    made = client.post(f"{chat}/shares", data={"csrf_token": csrf(client.get(chat).text), "expires": expires})
    assert made.status_code == 201
    return re.search(r"can read the chat as it is now: http://localhost(/s/[\w-]+)", made.text).group(1)


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


def test_revoked_expired_and_deleted_links_show_nothing(make_app, fake):
    app = make_app(AUTH="none")
    owner, chat = chat_with_an_answer(app, fake, "Hello", "Hi")
    revoked, day, kept = share_link(owner, chat), share_link(owner, chat, "1"), share_link(owner, chat)
    page = owner.get(chat).text
    assert page.count("Share link ") == 3 and " UTC)" in page  # the day's expiry is shown
    token = revoked.rsplit("/", 1)[1]
    owner.post(f"{chat}/shares/{token}/revoke", data={"csrf_token": csrf(page)})
    assert app.test_client().get(revoked).status_code == 404
    store = app.extensions["chat_store"]
    record = store.load_record(KIND, day.rsplit("/", 1)[1])
    store.save_record(KIND, day.rsplit("/", 1)[1], {**record, "expires_at": time.time() - 1})
    assert app.test_client().get(day).status_code == 404
    assert app.test_client().get(kept).status_code == 200
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


def test_a_link_made_before_shares_kept_their_page_still_shows(make_app, fake):
    app = make_app(AUTH="none")
    owner, chat = chat_with_an_answer(app, fake, "Older", "Kept")
    link = share_link(owner, chat)
    store, token = app.extensions["chat_store"], link.rsplit("/", 1)[1]
    record = store.load_record(KIND, token)
    del record["page"]  # as session 4's shares were saved
    store.save_record(KIND, token, record)
    assert "Kept" in app.test_client().get(link).text
