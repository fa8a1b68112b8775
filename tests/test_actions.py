"""Each chat action has one path (chatbot/chat/actions.py): done over the socket or by the form posts without
JavaScript, it stores the same; refused, it says the same words."""

from __future__ import annotations

import json
import re

import pytest

from chatbot.chat import attachments
from chatbot.services import inference
from chatbot.stores.conversations import Conversation
from chatbot.web import create_app
from tests.fakes.hf_server import TOKEN
from tests.fakes.websocket import SAID, SocketTab
from tests.helpers import csrf, open_chat, sign_in, sign_up
from tests.servers import FINISHED


@pytest.fixture
def store_url():
    return "memory://"  # the same store behind both transports: what they saved is compared, not how


class FormTab:
    """The same chat without JavaScript: every action is a form post."""

    def __init__(self, client, chat: str) -> None:
        self.client, self.chat = client, chat
        self.token = csrf(client.get(chat).text)

    def act(self, action: str, **fields: str) -> str:
        paths = {"send": "/messages", "regenerate": "/regenerate", "continue": "/continue", "switch": "/branch"}
        path = f"/messages/{fields['message_id']}/edit" if action == "edit" else paths[action]
        response = self.client.post(self.chat + path, data={"csrf_token": self.token, **fields})
        return response.text if response.status_code != 302 else ""

    def close(self) -> None:
        pass


def stored(store, conversation: Conversation) -> tuple[list[tuple], int | None]:
    """The conversation as kept: each message (role, text, status, the one it follows), and the branch shown."""
    messages = store.messages(conversation)
    at = {message.id: number for number, message in enumerate(messages)}
    current = store.get_conversation(conversation.owner, conversation.id)
    return [(m.role, m.content, m.status, at.get(m.parent_id)) for m in messages], at.get(current.leaf_id)


def every_action(tab, store, conversation: Conversation, fake) -> list[tuple[list[tuple], int | None]]:
    """Send, regenerate, edit, continue and switch in `tab`; what is stored after each."""
    after = []
    fake.reply(tokens=["One"])
    tab.act("send", message="Count")
    after.append(stored(store, conversation))
    fake.reply(tokens=["Two"])
    tab.act("regenerate")
    after.append(stored(store, conversation))
    question = store.messages(conversation)[0].id
    fake.reply(tokens=["Three,", " four,"], finish_reason="length")
    tab.act("edit", message_id=question, message="Count again")
    after.append(stored(store, conversation))
    fake.reply(tokens=[" five."])
    tab.act("continue")
    after.append(stored(store, conversation))
    tab.act("switch", message_id=question)
    after.append(stored(store, conversation))
    tab.close()
    return after


def test_every_action_stores_the_same_over_the_socket_and_without_javascript(app, client, store, fake):
    by_form = open_chat(client)
    form_chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    socket_chat = store.create_conversation(form_chat.owner)
    over_the_form = every_action(FormTab(client, by_form), store, form_chat, fake)
    over_the_socket = every_action(SocketTab(app, socket_chat), store, socket_chat, fake)
    assert over_the_socket == over_the_form
    messages, shown = over_the_form[-1]
    assert messages == [
        ("user", "Count", "done", None),
        ("assistant", "One", "done", 0),
        ("assistant", "Two", "done", 0),
        ("user", "Count again", "done", None),
        ("assistant", "Three, four, five.", "done", 3),
    ]
    assert shown == 2  # the first question's branch, with its newest answer


@pytest.mark.parametrize(
    ("action", "fields", "words"),
    [
        ("send", {"message": "x" * 20_001}, "Your message has 20,001 characters; the limit is 20,000."),
        ("send", {"message": ""}, "Type a message first."),
        ("regenerate", {}, "There is no question to answer again yet."),
        ("continue", {}, "There is no answer cut off at the length limit to continue."),
    ],
)
def test_a_refused_action_says_the_same_over_the_socket_and_without_javascript(
    app, client, store, fake, action, fields, words
):
    by_form = open_chat(client)
    form_chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    socket_chat = store.create_conversation(form_chat.owner)
    tab = SocketTab(app, socket_chat)
    try:
        said = SAID.search(tab.act(action, **fields))
    finally:
        tab.close()
    assert said is not None and words in said["words"]
    assert words in FormTab(client, by_form).act(action, **fields)
    assert stored(store, form_chat) == stored(store, socket_chat) == ([], None)


@pytest.fixture
def two_models(fake):
    """The app with two models to pick from (the first one is the chat's own)."""
    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    base = {"TESTING": True, "SECRET_KEY": "t", "CHAT_STORE_URL": "memory://", "HF_API_TOKEN": TOKEN}
    return create_app({**base, "MODELS": json.dumps(models), "MAX_LOADING_WAIT": 0.0})


def test_a_refused_message_leaves_the_model_as_it_was_on_both_transports(two_models, fake):
    client, store = two_models.test_client(), two_models.extensions["chat_store"]
    by_form = open_chat(client)
    form_chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    socket_chat = store.create_conversation(form_chat.owner)
    FormTab(client, by_form).act("send", message="", model="Router chat")
    tab = SocketTab(two_models, socket_chat)
    try:
        tab.act("send", message="", model="Router chat")
    finally:
        tab.close()
    for chat in (form_chat, socket_chat):
        assert "model" not in store.get_conversation(chat.owner, chat.id).settings


def test_a_message_with_a_file_works_out_its_settings_once_on_both_transports(app, client, store, fake, monkeypatch):
    by_form = open_chat(client)
    form_chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    socket_chat = store.create_conversation(form_chat.owner)
    notes = attachments.check("notes.txt", b"Paris is the capital.", attachments.Limits.from_config(app.config))
    for chat in (form_chat, socket_chat):
        store.save_file(chat, notes.info["id"], notes.info, notes.data)
    form = FormTab(client, by_form)  # the page is read before counting: it shows the settings
    backends_for, real = [], inference.backend_for  # asked once each time the settings are worked out
    monkeypatch.setattr(inference, "backend_for", lambda *given: backends_for.append(given) or real(*given))
    tab = SocketTab(app, socket_chat)
    try:
        assert FINISHED.search(tab.act("send", message="Capital?", attachment=notes.info["id"]))
    finally:
        tab.close()
    form.act("send", message="Capital?", attachment=notes.info["id"])
    assert len(backends_for) == 2  # one per message
    assert stored(store, form_chat) == stored(store, socket_chat)


def owner_of(client) -> str:
    with client.session_transaction() as session:
        return session["owner"]


@pytest.mark.parametrize("action", ["send", "regenerate"])
def test_an_unknown_model_name_is_refused_with_the_closest_names_and_the_message_kept(two_models, fake, action):
    client, store = two_models.test_client(), two_models.extensions["chat_store"]
    by_form = open_chat(client)
    form_chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    socket_chat = store.create_conversation(form_chat.owner)
    if action == "regenerate":  # a question to answer again, by the chat's own model
        for chat in (form_chat, socket_chat):
            fake.reply(tokens=["Hi"])
            tab = SocketTab(two_models, chat)
            tab.act("send", message="Hello")
            tab.close()
    before = [stored(store, chat) for chat in (form_chat, socket_chat)]
    asked = len(fake.requests)
    page = FormTab(client, by_form).act(action, message="What is markdown?", model="Router chatt")
    tab = SocketTab(two_models, socket_chat)
    try:
        said = SAID.search(tab.act(action, message="What is markdown?", model="Router chatt"))
    finally:
        tab.close()
    words = "There is no model named Router chatt to pick, so nothing was sent. Did you mean Router chat?"
    assert said is not None and said["words"] == words
    assert words in page
    if action == "send":
        assert ">What is markdown?</textarea>" in page  # the message stays in the box
    assert len(fake.requests) == asked  # nothing went to any model
    assert [stored(store, chat) for chat in (form_chat, socket_chat)] == before
    for chat in (form_chat, socket_chat):
        assert "model" not in store.get_conversation(chat.owner, chat.id).settings


def test_a_model_the_account_may_not_use_is_refused_in_words(make_app, fake):
    from chatbot.chat import actions, picker
    from chatbot.chat.actions import Refused, Visitor

    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    app = make_app(MODELS=json.dumps(models))
    store = app.extensions["chat_store"]
    conversation = store.create_conversation("someone")
    allowed_gemma = {**app.config, "ALLOWED_MODELS": ("Gemma",)}
    with pytest.raises(Refused) as refused:
        actions.send(store, conversation, Visitor(allowed_gemma), "Hello", model="Router chat")
    assert str(refused.value) == (
        "Your account may not use the model Router chat (the admin chose which it may): pick Gemma."
    )
    assert picker.refusal(allowed_gemma, "Gemma") is None
    assert fake.requests == []


@pytest.mark.parametrize("transport", ["socket", "form"])
def test_regenerate_and_edit_answer_with_the_model_picked_now_and_each_answer_names_its_model(
    two_models, fake, transport
):
    client, store = two_models.test_client(), two_models.extensions["chat_store"]
    by_form = open_chat(client)
    chat = store.get_conversation(owner_of(client), by_form.rsplit("/", 1)[1])
    tab = FormTab(client, by_form) if transport == "form" else SocketTab(two_models, chat)
    try:
        fake.reply(tokens=["From Gemma"])
        tab.act("send", message="Hello", model="Gemma")
        fake.reply(tokens=["From the router"])
        tab.act("regenerate", model="Router chat")
        assert fake.requests[-1].json["model"] == "meta-llama/Llama-3.1-8B-Instruct"
        question = store.messages(chat)[0].id
        fake.reply(tokens=["Gemma again"])
        tab.act("edit", message_id=question, message="Hello again", model="Gemma")
        assert "model" not in fake.requests[-1].json  # the text-generation task API names no model
    finally:
        tab.close()
    answers = [(m.content, m.meta["model"]) for m in store.messages(chat) if m.role == "assistant"]
    assert answers == [("From Gemma", "Gemma"), ("From the router", "Router chat"), ("Gemma again", "Gemma")]


def test_a_model_picked_in_the_menu_shows_at_once_in_every_tab_of_the_chat(two_models, fake):
    client, store = two_models.test_client(), two_models.extensions["chat_store"]
    chat_url = open_chat(client)
    chat = store.get_conversation(owner_of(client), chat_url.rsplit("/", 1)[1])
    picking, other = SocketTab(two_models, chat), SocketTab(two_models, store.get_conversation(chat.owner, chat.id))
    try:
        before = other.send("pick", model="Nope")  # sent by the other tab: only it is told
        assert "There is no model named Nope to pick" in other.ws.wait_for(SAID, after=before)
        picking.send("pick", model="Router chat")
        header = re.compile(r'<div id="chat-model" class="model" data-model="Router chat" hx-swap-oob="true">')
        picking.ws.wait_for(header)
        other.ws.wait_for(header, seconds=5)  # another tab: within a second or so, without reloading
    finally:
        picking.close()
        other.close()
    assert store.get_conversation(chat.owner, chat.id).settings["model"] == "Router chat"


def test_the_menu_without_javascript_picks_searches_and_refuses_in_words(two_models, fake):
    client = two_models.test_client()
    chat_url = open_chat(client)
    page = client.get(chat_url).text
    assert '<details class="model-menu" id="model-menu">' in page  # closed until searched
    searched = client.get(chat_url, query_string={"models": "router"}).text
    assert '<details class="model-menu" id="model-menu" open>' in searched
    assert 'value="Router chat"' in searched and 'name="model" value="Gemma"' not in searched
    token = csrf(page)
    refused = client.post(f"{chat_url}/model", data={"csrf_token": token, "model": "Gema"})
    assert refused.status_code == 400 and "There is no model named Gema to pick" in refused.text
    assert "Did you mean Gemma?" in refused.text
    assert client.post(f"{chat_url}/model", data={"csrf_token": token, "model": "Router chat"}).status_code == 302
    page = client.get(chat_url).text
    assert '<span id="current-model">Router chat</span>' in page
    assert re.search(r'value="Router chat" class="model-choice" aria-current="true"', page)
    assert 'placeholder="Message Router chat' in page


def new_chat(client) -> str:
    return client.post("/c", data={"csrf_token": csrf(client.get("/", follow_redirects=True).text)}).location


def test_a_new_chat_starts_with_the_model_and_settings_used_last_in_this_browser_only(two_models, fake):
    client, store = two_models.test_client(), two_models.extensions["chat_store"]
    chat_url = open_chat(client)
    chat = store.get_conversation(owner_of(client), chat_url.rsplit("/", 1)[1])
    tab = SocketTab(two_models, chat)
    try:
        tab.send("pick", model="Router chat")  # over the socket, as the menu does with the script
        tab.ws.wait_for('data-model="Router chat"')
    finally:
        tab.close()
    token = csrf(client.get(chat_url).text)
    client.post(f"{chat_url}/settings", data={"csrf_token": token, "temperature": "0.3", "do_sample": "on"})
    client.post(f"{chat_url}/rename", data={"csrf_token": token, "title": "Kept"})  # New chat makes another then
    page = client.get(new_chat(client)).text
    assert '<span id="current-model">Router chat</span>' in page and "temperature 0.3" in page
    stranger = two_models.test_client()  # another browser, without accounts: its own
    assert '<span id="current-model">Gemma</span>' in stranger.get("/", follow_redirects=True).text


def test_set_as_my_default_wins_over_what_was_used_last_and_follows_the_account(make_app, fake):
    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    app = make_app(MODELS=json.dumps(models))
    laptop, phone = app.test_client(), app.test_client()
    sign_up(laptop, "ada")
    sign_in(phone, "ada")
    chat = laptop.get("/").location
    token = csrf(laptop.get(chat).text)
    laptop.post(f"{chat}/model", data={"csrf_token": token, "model": "Router chat"})
    form = {"csrf_token": token, "system_prompt": "Be brief.", "max_new_tokens": "99", "as_default": "on"}
    assert (
        "Your new chats start with this model" in laptop.post(f"{chat}/settings", data=form, follow_redirects=True).text
    )
    laptop.post(f"{chat}/model", data={"csrf_token": token, "model": "Gemma"})  # used last, not the default
    laptop.post(f"{chat}/rename", data={"csrf_token": token, "title": "Kept"})  # New chat makes another then
    page = phone.get(new_chat(phone)).text  # another browser of the same account
    assert '<span id="current-model">Router chat</span>' in page
    changed = re.search(r'<span class="changed-settings">([^<]*)</span>', page)[1].split(" · ")
    assert "at most 99 tokens" in changed and "own system prompt" in changed
    assert "your default model and settings" in page


def test_presets_start_new_chats_and_an_admin_shares_one_with_everyone(make_app, fake):
    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    app = make_app(MODELS=json.dumps(models))
    ada, bob = app.test_client(), app.test_client()
    sign_up(ada, "ada")
    sign_up(bob, "bob")
    token = csrf(ada.get("/", follow_redirects=True).text)
    ada.post("/admin/accounts/bob", data={"csrf_token": token, "action": "approve"})
    sign_in(bob, "bob")
    chat = ada.get("/").location
    ada.post(f"{chat}/model", data={"csrf_token": token, "model": "Router chat"})
    ada.post(f"{chat}/settings", data={"csrf_token": token, "system_prompt": "You are a poet.", "max_new_tokens": "77"})
    saved = ada.post(
        f"{chat}/presets", data={"csrf_token": token, "name": "Poet", "share": "on"}, follow_redirects=True
    )
    assert "Saved the preset Poet for everyone" in saved.text
    bobs = bob.get("/").location
    bob_token = csrf(bob.get(bobs).text)
    bob.post(f"{bobs}/settings", data={"csrf_token": bob_token, "system_prompt": "Be terse."})
    bob.post(f"{bobs}/presets", data={"csrf_token": bob_token, "name": "Terse", "share": "on"})  # not his to share
    page = bob.get(bobs).text
    assert '<option value="own:Terse">Terse</option><option value="shared:Poet">Poet (everyone\'s)</option>' in page
    assert "Terse" not in ada.get(chat).text  # his own: nobody else's
    started = bob.post("/c", data={"csrf_token": bob_token, "preset": "shared:Poet"}).location
    page = bob.get(started).text
    assert '<span id="current-model">Router chat</span>' in page and "at most 77 tokens" in page
    fake.reply(tokens=["Roses"])
    bob.post(f"{started}/messages", data={"csrf_token": bob_token, "message": "A rhyme?"})
    assert fake.requests[-1].json["messages"][0] == {"role": "system", "content": "You are a poet."}
    too_long = bob.post(f"{bobs}/presets", data={"csrf_token": bob_token, "name": "x" * 61})
    assert too_long.status_code == 400 and "give the preset a name of 1 to 60 characters" in too_long.text
