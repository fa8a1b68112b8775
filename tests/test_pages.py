"""The HTML routes: sessions own conversations, forms need CSRF, the page works without JavaScript."""

import io
import json
import re
from datetime import datetime, timedelta

import pytest

from chatbot.stores.conversations import Conversation, new_id
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf, open_chat, post, sign_in, sign_up


def picked(page_html):
    """The model the picker shows as chosen."""
    return re.search(r'id="model-input" name="model" list="model-options" value="([^"]*)"', page_html).group(1)


def test_the_first_visit_opens_a_conversation_and_the_next_returns_to_it(client):
    first = open_chat(client)
    assert first.startswith("/c/")
    assert open_chat(client) == first
    page = client.get(first)
    assert page.status_code == 200
    assert 'hx-ext="ws"' in page.text and f'ws-connect="{first}/socket"' in page.text


def test_another_browser_cannot_see_my_conversation(app, client):
    mine = open_chat(client)
    stranger = app.test_client()
    assert stranger.get(mine).status_code == 404
    open_chat(stranger)
    assert stranger.get(mine).status_code == 404


def test_the_cookie_holds_only_a_session_id(client):
    open_chat(client)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only
    assert len(cookie.value) < 200  # an id and a CSRF token, never the conversation


def test_forms_need_the_csrf_token(client):
    chat = open_chat(client)
    assert client.post("/c").status_code == 400
    token = csrf(client.get(chat).text)
    created = client.post("/c", data={"csrf_token": token})
    assert created.status_code == 302 and created.location == chat  # the chat with no message yet, not another


def test_without_javascript_the_form_posts_and_the_page_shows_the_answer(client, fake):
    chat = open_chat(client)
    fake.reply(tokens=["It", " is", " **4**."])
    posted = client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "2+2?"})
    assert posted.status_code == 302 and posted.location == f"{chat}#end"
    page = client.get(chat).text
    assert "2+2?" in page and "It is <strong>4</strong>." in page


def test_an_empty_post_is_refused_with_words(client):
    chat = open_chat(client)
    response = client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": " "})
    assert response.status_code == 400 and "Type a message first." in response.text


def test_a_failure_is_shown_in_the_page_and_the_message_kept(client, fake):
    chat = open_chat(client)
    fake.reply(status=503, body={"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 20.0})
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Still there?"})
    page = client.get(chat).text
    assert "Still there?" in page
    assert "The model google/gemma-7b-it is loading (about 20 s)." in page
    assert 'role="alert"' in page


def test_what_the_user_typed_is_escaped(client, fake):
    chat = open_chat(client)
    fake.reply(tokens=["ok"])
    client.post(
        f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "<script>alert(1)</script>"}
    )
    page = client.get(chat).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_security_headers_and_no_token_in_the_page(client):
    page = client.get(open_chat(client))
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert TOKEN not in page.text


def test_the_model_picked_in_the_chat_is_used_and_remembered(tmp_path, fake):
    from chatbot.web import create_app

    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {
            "name": "Router chat",
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "api": "chat",
            "url": fake.url + "/v1",
            "parameters": {"max_new_tokens": 64, "temperature": 0.2},
        },
    ]
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db",
            "HF_API_TOKEN": TOKEN,
            "MODELS": json.dumps(models),
        }
    )
    client = app.test_client()
    chat = open_chat(client)
    page = client.get(chat).text
    assert '<option value="Gemma">' in page and '<option value="Router chat">' in page
    assert picked(page) == "Gemma"
    token = csrf(page)
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "hi", "model": "Router chat"})
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["max_tokens"] == 64 and fake.requests[-1].json["temperature"] == 0.2
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "again"})
    assert fake.requests[-1].path == "/v1/chat/completions"
    page = client.get(chat).text
    assert picked(page) == "Router chat"
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "x", "model": "No such model"})
    assert fake.requests[-1].path == "/v1/chat/completions"


def test_rename_delete_and_search(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    fake.reply(tokens=["Bonjour"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Say hello in French"})
    other = client.post("/c", data={"csrf_token": token}).location
    fake.reply(tokens=["ok"])
    client.post(f"{other}/messages", data={"csrf_token": token, "message": "100% sure?"})

    assert client.post(f"{chat}/rename", data={"csrf_token": token, "title": "  French   lesson "}).status_code == 302
    page = client.get(chat).text
    assert '<h1 id="conversation-title">French lesson</h1>' in page

    found = client.get(f"{chat}?q=bonjour").text  # in an answer, any case
    assert "1 found for “bonjour”" in found and "French lesson" in found and "100% sure?" not in found
    assert "1 found for “100%”" in client.get(f"{chat}?q=100%25").text  # % is a letter, not a wildcard
    assert "0 found for “_”" in client.get(f"{chat}?q=_").text

    assert client.post(f"{chat}/delete", data={"csrf_token": token}).location == "/"
    assert client.get(chat).status_code == 404
    assert "French lesson" not in client.get(other).text


def test_nobody_renames_or_deletes_another_sessions_chat(app, client):
    chat = open_chat(client)
    stranger = app.test_client()
    token = csrf(stranger.get(open_chat(stranger)).text)
    assert stranger.post(f"{chat}/rename", data={"csrf_token": token, "title": "mine"}).status_code == 404
    assert stranger.post(f"{chat}/delete", data={"csrf_token": token}).status_code == 404
    assert client.get(chat).status_code == 200


def test_delete_asks_once_on_a_confirming_page_without_javascript(app, client, fake):
    chat = open_chat(client)
    fake.reply(tokens=["Sure"])
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Plan a trip"})
    assert f'href="{chat}/delete"' in client.get(chat).text  # Delete is a link to the question

    asked = client.get(f"{chat}/delete")
    assert asked.status_code == 200 and "Delete this chat?" in asked.text and "“Plan a trip”" in asked.text
    assert f'<form class="delete-form" method="post" action="{chat}/delete">' in asked.text
    assert csrf(asked.text) and f'class="button secondary cancel" href="{chat}"' in asked.text  # Cancel goes back
    assert client.get(chat).status_code == 200  # nothing deleted by asking

    stranger = app.test_client()
    token = csrf(stranger.get(open_chat(stranger)).text)
    assert stranger.get(f"{chat}/delete").status_code == 404
    assert stranger.post(f"{chat}/delete", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{chat}/delete").status_code == 400  # no CSRF token, no delete
    assert client.get(chat).status_code == 200

    deleted = client.post(f"{chat}/delete", data={"csrf_token": csrf(asked.text)})
    assert deleted.status_code == 302 and deleted.location == "/"
    assert client.get(chat).status_code == 404 and client.get(f"{chat}/delete").status_code == 404


def actions_of(page_html, message_id):
    """The actions under one message: its <footer>."""
    article = page_html.split(f'<article id="msg-{message_id}"', 1)[1].split("</article>", 1)[0]
    return article.split('<footer class="message-actions">', 1)[1].split("</footer>", 1)[0]


def test_a_messages_actions_are_small_labelled_icon_buttons_and_forms_without_javascript(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    fake.reply(tokens=["Four"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "2+2?"})
    fake.reply(tokens=["It is four."])
    client.post(f"{chat}/regenerate", data={"csrf_token": token})
    page = client.get(chat).text
    question, answer = re.findall(r'<article id="msg-([\w-]+)" class="message (?:user|assistant)', page)

    def labelled(actions, name, tag="button"):  # named for screen readers (the CSS's tooltip too), drawn by an icon
        shown = rf'<{tag} [^>]*aria-label="{name}"[^>]*>\s*<svg class="icon" aria-hidden="true"'
        found = re.search(shown, actions)
        assert found, f"{name} in {actions}"
        return found.group(0)

    mine = actions_of(page, question)
    assert 'type="button"' in labelled(mine, "Copy message")
    # Edit: a page with its form without JavaScript (the script opens the page's one edit form in place)
    assert f'href="{chat}/m/{question}/edit"' in labelled(mine, "Edit", tag="a")
    assert f'form="fork-form" class="icon-action" name="message_id" value="{question}"' in labelled(
        mine, "New chat from here"
    )
    theirs = actions_of(page, answer)
    assert "needs-script" in labelled(theirs, "Copy answer")  # only the script copies: hidden without it
    regenerate = labelled(theirs, "Regenerate")
    assert f'form="regenerate-form" class="icon-action regenerate" name="after" value="{answer}"' in regenerate
    assert f'<form id="regenerate-form" method="post" action="{chat}/regenerate" hidden>' in page
    assert 'form="branch-form"' in labelled(theirs, "Previous version")
    assert "disabled" in labelled(theirs, "Next version")  # the newest version is shown
    labelled(theirs, "New chat from here")
    assert "regenerate" not in page.split('id="controls"', 1)[1].split("</div>", 1)[0]  # not in the composer now
    assert 'form="composer"' not in page  # Enter in the composer presses its first button, Send, and nothing else
    for form in ('id="regenerate-form"', 'id="fork-form"', 'id="branch-form"', 'id="edit-form"'):  # once a page
        assert page.count(form) == 1


def test_a_long_chat_repeats_no_form_and_only_its_last_answer_can_be_regenerated(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    for question in ("One?", "Two?", "Three?"):
        fake.reply(tokens=[f"Answer to {question}"])
        client.post(f"{chat}/messages", data={"csrf_token": token, "message": question})
    page = client.get(chat).text
    answers = re.findall(r'<article id="msg-([\w-]+)" class="message assistant', page)
    assert len(answers) == 3 and page.count('aria-label="Edit"') == 3
    shown = page.split('id="messages"', 1)[1].split("</section>", 1)[0]
    assert "<form" not in shown and "<textarea" not in shown and "csrf_token" not in shown
    assert page.count('<form class="edit" ws-send method="post"') == 1  # the page's one, the script puts in place
    assert page.count('aria-label="Regenerate"') == 1 and f'name="after" value="{answers[-1]}"' in page
    assert " title=" not in shown  # each button's aria-label is its tooltip too (CSS)


def test_edit_is_a_page_of_its_own_without_javascript_that_posts_the_edit(app, client, fake):
    chat = open_chat(client)
    fake.reply(tokens=["Four"])
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "2 + 2 <b>?</b>"})
    question, answer = re.findall(r'<article id="msg-([\w-]+)"', client.get(chat).text)

    edit = client.get(f"{chat}/m/{question}/edit")
    assert edit.status_code == 200 and "<title>Edit your message · Chat</title>" in edit.text
    assert f'<form class="edit" method="post"\n      action="{chat}/messages/{question}/edit">' in edit.text
    assert "ws-send" not in edit.text  # a plain post: no socket on this page
    assert f'name="message_id" value="{question}"' in edit.text
    assert ">2 + 2 &lt;b&gt;?&lt;/b&gt;</textarea>" in edit.text
    assert f'class="button secondary cancel" href="{chat}#msg-{question}"' in edit.text  # back to the message
    fake.reply(tokens=["Six"])
    sent = client.post(f"{chat}/messages/{question}/edit", data={"csrf_token": csrf(edit.text), "message": "3 + 3?"})
    assert sent.status_code == 302
    page = client.get(chat).text
    assert "3 + 3?" in page and "Six" in page and "2 / 2" in page

    assert client.get(f"{chat}/m/{answer}/edit").status_code == 404  # an answer is regenerated, not edited
    assert client.get(f"{chat}/m/nope/edit").status_code == 404
    stranger = app.test_client()
    open_chat(stranger)
    assert stranger.get(f"{chat}/m/{question}/edit").status_code == 404


def test_regenerate_and_edit_without_javascript(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    fake.reply(tokens=["One"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Count"})
    fake.reply(tokens=["Two"])
    assert client.post(f"{chat}/regenerate", data={"csrf_token": token}).status_code == 302
    page = client.get(chat).text
    assert "Two" in page and ">One<" not in page
    message_id = re.search(r'name="message_id" value="([\w-]+)"', page).group(1)
    fake.reply(tokens=["Three"])
    client.post(f"{chat}/messages/{message_id}/edit", data={"csrf_token": token, "message": "Count again"})
    page = client.get(chat).text
    assert "Count again" in page and "Three" in page and "Two" not in page
    assert '<div class="body plain">Count</div>' not in page
    assert client.post(f"{chat}/messages/nope/edit", data={"csrf_token": token, "message": "x"}).status_code == 404


def test_conversation_settings_change_the_request(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    form = {
        "csrf_token": token,
        "system_prompt": "Be terse.",
        "max_new_tokens": "64",
        "temperature": "0.2",
        "top_p": "0.5",
        "do_sample": "on",
    }
    assert client.post(f"{chat}/settings", data=form).status_code == 302
    page = client.get(chat).text
    changed = re.search(r'<span class="changed-settings">([^<]*)</span>', page)
    assert changed is not None
    assert set(changed[1].split(" · ")) == {"at most 64 tokens", "temperature 0.2", "top_p 0.5", "own system prompt"}
    fake.reply(tokens=["ok"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Hi"})
    sent = fake.requests[-1].json
    assert sent["inputs"].startswith("<bos><start_of_turn>user\nBe terse.\n\nHi")
    assert sent["parameters"]["max_new_tokens"] == 64 and sent["parameters"]["temperature"] == 0.2

    client.post(f"{chat}/settings", data={"csrf_token": token, "system_prompt": "", "max_new_tokens": "64"})
    fake.reply(tokens=["ok"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Again"})
    assert fake.requests[-1].json["parameters"]["do_sample"] is False
    assert '<span class="changed-settings">at most 64 tokens · greedy</span>' in client.get(chat).text
    assert "temperature" not in fake.requests[-1].json["parameters"]

    bad = client.post(f"{chat}/settings", data={"csrf_token": token, "top_p": "3", "do_sample": "on"})
    assert bad.status_code == 400 and "The settings were not saved: top_p=&#39;3&#39;: it takes a number" in bad.text
    other = client.post("/c", data={"csrf_token": token}).location
    assert "at most 64 tokens · greedy" in client.get(other).text  # a new chat starts with the settings used last


def test_a_missing_conversation_says_it_may_have_expired(client):
    open_chat(client)
    page = client.get("/c/not-a-conversation")
    assert page.status_code == 404
    assert "It may have expired: conversations are kept 30 days after their last message." in page.text


def test_without_javascript_the_form_sends_a_file_with_the_message(client, fake):
    chat = open_chat(client)
    page = client.get(chat).text
    assert (
        'enctype="multipart/form-data"' in page and '<input id="file-input" type="file" name="files" multiple>' in page
    )
    fake.reply(tokens=["Three", " rows."])
    posted = client.post(
        f"{chat}/messages",
        data={"csrf_token": csrf(page), "message": "How many rows?", "files": (io.BytesIO(b"a\nb\nc\n"), "rows.csv")},
        content_type="multipart/form-data",
    )
    assert posted.status_code == 302 and posted.location == f"{chat}#end"
    assert "Attached file: rows.csv\n```\na\nb\nc\n\n```\n\nHow many rows?" in fake.requests[-1].json["inputs"]
    page = client.get(chat).text
    link = re.search(r'<a href="(/c/[\w-]+/files/[\w-]+)" download>rows.csv</a>', page).group(1)
    assert client.get(link).data == b"a\nb\nc\n" and "Three rows." in page


def test_an_empty_chat_greets_with_the_model_and_prompts_that_send_without_javascript(client, fake):
    chat = open_chat(client)
    page = client.get(chat).text
    greeting = page[page.index('<section id="greeting"') : page.index("</section>", page.index('id="greeting"'))]
    assert '<h2 id="greeting-model">google/gemma-7b-it</h2>' in greeting
    assert '<p class="introduction">by google</p>' in greeting
    assert "built-in-note" not in greeting  # not the tiny built-in model
    prompts = re.findall(r'<button type="submit" name="message" value="([^"]+)"', greeting)
    assert len(prompts) == 4
    fake.reply(tokens=["Light bends in raindrops."])
    client.post(f"{chat}/messages", data={"csrf_token": csrf(page), "action": "send", "message": prompts[0]})
    assert fake.requests[-1].json["inputs"].endswith(f"{prompts[0]}<end_of_turn>\n<start_of_turn>model\n")
    page = client.get(chat).text
    assert 'id="greeting"' not in page and "Light bends in raindrops." in page


@pytest.mark.parametrize("admin", [True, False], ids=["the operator", "a user"])
def test_on_the_built_in_model_the_greeting_says_it_is_tiny_and_how_to_get_a_better_one(make_app, fake, admin):
    from chatbot.local_model.server import MODEL_ALIAS

    built_in = {"API_URL": fake.url + "/v1", "INFERENCE_API": "chat", "MODEL_ID": MODEL_ALIAS}
    app = make_app(AUTH="none", **built_in) if admin else make_app(**built_in)
    client = app.test_client()
    if not admin:
        sign_up(app.test_client(), "ada")  # the admin
        sign_up(client, "bob")
        post_as_admin = app.test_client()
        sign_in(post_as_admin, "ada")
        post(post_as_admin, "/admin/accounts/bob", action="approve")
        sign_in(client, "bob")
    page = client.get("/", follow_redirects=True).text
    assert "SmolLM2-135M-Instruct: a tiny model (135 million parameters) running on this machine" in page
    note = re.search(r'<p class="built-in-note">([^<]*)</p>', page)[1]
    assert note.startswith("For better answers, pick a model in the menu at the top")
    if admin:
        assert "HF_API_TOKEN in .env" in note and "API_URL in .env" in note
    else:
        assert note.endswith(", or ask the admin for one.") and ".env" not in note


def owner_of(client):
    with client.session_transaction() as session:
        return session["owner"]


def test_the_sidebar_groups_the_chats_by_the_day_of_their_last_activity(client, store):
    chat = open_chat(client)
    now = datetime.now()
    for title, days_ago in [("Plan a garden", 0), ("Tax questions", 3), ("Old poem", 40), ("Older still", 90)]:
        kept = Conversation(new_id(), owner_of(client), title, updated_at=(now - timedelta(days=days_ago)).timestamp())
        store.restore_conversation(kept, [])
    sidebar = client.get(chat).text.split('<nav class="sidebar"')[1].split("</nav>")[0]
    groups = re.findall(r'<h2 class="chat-group" id="[^"]+">([^<]+)</h2>\s*<ul[^>]*>(.*?)</ul>', sidebar, re.S)
    assert [(heading, re.findall(r">([^<>]+)</a>", chats)) for heading, chats in groups] == [
        ("Today", ["Plan a garden", "New chat"]),  # newest first
        ("Previous 7 days", ["Tax questions"]),
        ("Older", ["Old poem", "Older still"]),
    ]  # no "Yesterday": nothing was used then
    found = client.get(f"{chat}?q=poem").text
    assert re.findall(r'<h2 class="chat-group" id="[^"]+">([^<]+)</h2>', found) == ["Older"]


@pytest.mark.parametrize("preset", [False, True], ids=["New chat", "from a preset"])
def test_new_chat_twice_makes_one_empty_chat_and_goes_back_to_it(client, store, fake, preset):
    chat = open_chat(client)  # the first visit makes a chat: empty
    token = csrf(client.get(chat).text)
    if preset:
        client.post(f"{chat}/settings", data={"csrf_token": token, "system_prompt": "Be terse.", "max_new_tokens": "9"})
        client.post(f"{chat}/presets", data={"csrf_token": token, "name": "Terse"})
    form = {"csrf_token": token, **({"preset": "own:Terse"} if preset else {})}
    assert [client.post("/c", data=form).location for _ in range(2)] == [chat, chat]  # no new one
    assert len(store.list_conversations(owner_of(client))) == 1
    fake.reply(tokens=["Hi"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Hello"})
    other = client.post("/c", data=form).location
    assert other != chat and client.post("/c", data=form).location == other
    assert len(store.list_conversations(owner_of(client))) == 2
    assert client.get(other).text.count('<li><a href="/c/') == 2  # one entry each in the sidebar
    renamed = client.post(f"{other}/rename", data={"csrf_token": token, "title": "Kept for later"})
    assert renamed.status_code == 302 and client.post("/c", data=form).location not in (chat, other)


def test_the_account_menu_holds_import_admin_and_sign_out_with_its_csrf_token(make_app):
    app = make_app(AUTH="local")
    client = app.test_client()
    sign_up(client, "ada")  # the first account: the admin
    page = client.get("/", follow_redirects=True).text
    start = page.index('<details class="account account-menu"')
    menu = page[start : page.index("</details>", start)]
    assert '<span class="account-name">ada</span>' in menu and "Signed in as <strong>ada</strong>" in menu
    assert '<a href="/admin/" class="admin-link">Admin</a>' in menu and 'id="import-file"' in menu
    sign_out = re.search(r'<form method="post" action="/sign-out">\s*<input type="hidden" name="csrf_token"', menu)
    assert sign_out and 'action="/sign-out-everywhere"' in menu
    sidebar_outside_the_menu = page.split('<nav class="sidebar"')[1].split("</nav>")[0].replace(menu, "")
    for moved in ("import-file", "/sign-out", "/admin/"):
        assert moved not in sidebar_outside_the_menu
    sign_up(app.test_client(), "bob")  # waits for ada's approval: the closed menu says so
    summary = client.get("/", follow_redirects=True).text.split('id="account-menu">')[1].split("</summary>")[0]
    assert '<span class="badge waiting-mark" title="1 waiting for approval">1<span' in summary
    assert client.post("/sign-out").status_code == 400  # still a form post with the token
    assert client.post("/sign-out", data={"csrf_token": csrf(page)}).status_code == 302
