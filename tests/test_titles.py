"""Titles written by the model after a chat's first answer: one short request, not streamed; a failure, a rename
meanwhile or a model with titles off keeps the first message's title."""

import json

import pytest

from chatbot.chat import titles
from chatbot.chat.reply_settings import settings_from_config
from chatbot.chat.titles import tidy, title_from
from chatbot.local_model.server import RECOMMENDED
from chatbot.services.settings import load_settings
from chatbot.web import create_app
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf, open_chat
from tests.servers import ChatClient, GunicornApp, read_until


@pytest.fixture
def titled_app(tmp_path, fake):
    def make(**settings):
        base = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "MODEL_TITLES": True}
        return create_app({**base, "API_URL": fake.task_url(), "HF_API_TOKEN": TOKEN, **settings})

    return make


def ask(client, chat, text):
    return client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": text})


def title_of(client, chat):
    return client.get(chat).text.split('<h1 id="conversation-title">')[1].split("</h1>")[0]


def test_after_the_first_answer_the_model_writes_the_title(titled_app, fake):
    client = titled_app().test_client()
    chat = open_chat(client)
    fake.reply(tokens=["Take", " the", " train", " to", " Porto"])
    fake.reply(tokens=['"Train', " trip", ' to Porto."'])
    ask(client, chat, "How do I get from Lisbon to Porto cheaply?")
    assert title_of(client, chat) == "Train trip to Porto"
    asked = fake.requests[-1].json
    assert asked["stream"] is False and asked["parameters"]["max_new_tokens"] == 24
    assert "Lisbon to Porto cheaply" in asked["inputs"] and "Take the train to Porto" in asked["inputs"]
    fake.reply(tokens=["Sure"])
    ask(client, chat, "And back?")
    assert len(fake.requests) == 3  # only after the first answer
    assert title_of(client, chat) == "Train trip to Porto"


def test_a_failed_title_keeps_the_first_messages(titled_app, fake):
    client = titled_app().test_client()
    chat = open_chat(client)
    fake.reply(tokens=["Fine"])
    fake.reply(status=500, body={"error": "overloaded"})
    ask(client, chat, "Tell me about owls")
    assert title_of(client, chat) == "Tell me about owls"
    assert "Fine" in client.get(chat).text


def test_titles_off_for_a_model_and_for_the_built_in_model(titled_app, fake):
    models = [{"name": "No titles", "id": "google/gemma-7b-it", "url": fake.task_url(), "titles": False}]
    client = titled_app(MODELS=json.dumps(models)).test_client()
    chat = open_chat(client)
    fake.reply(tokens=["Hoot"])
    ask(client, chat, "Owls?")
    assert len(fake.requests) == 1 and title_of(client, chat) == "Owls?"
    assert RECOMMENDED["MODEL_TITLES"] == "false"  # what `make run` sets for the built-in model
    built_in = load_settings({"API_URL": fake.task_url(), **RECOMMENDED})
    assert settings_from_config(built_in).titles is False


def while_the_model_titles(monkeypatch, meanwhile):
    """Run `meanwhile()` while the model is asked for the title (the seconds that request takes)."""
    asked = titles.model_title

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        meanwhile()
        return asked(*args, **kwargs)

    monkeypatch.setattr(titles, "model_title", slow)


def test_what_is_saved_while_the_model_titles_is_kept(titled_app, fake, monkeypatch):
    client = titled_app().test_client()
    chat = open_chat(client)

    def meanwhile():  # the user saves settings and makes a share link in another tab
        form = {"csrf_token": csrf(client.get(chat).text), "system_prompt": "Be brief.", "max_new_tokens": "20"}
        assert client.post(f"{chat}/settings", data=form).status_code == 302
        assert client.post(f"{chat}/shares", data={"csrf_token": form["csrf_token"]}).status_code == 201

    while_the_model_titles(monkeypatch, meanwhile)
    fake.reply(tokens=["Hoot"])
    fake.reply(tokens=["Owl", " facts"])
    ask(client, chat, "Owls?")
    page = client.get(chat).text
    assert title_of(client, chat) == "Owl facts"
    assert ">Be brief.</textarea>" in page and "at most 20 tokens" in page
    assert "Share link 1" in page


def test_a_rename_while_the_model_titles_is_kept(titled_app, fake, monkeypatch):
    client = titled_app().test_client()
    chat = open_chat(client)

    def meanwhile():
        client.post(f"{chat}/rename", data={"csrf_token": csrf(client.get(chat).text), "title": "Mine"})

    while_the_model_titles(monkeypatch, meanwhile)
    fake.reply(tokens=["Hoot"])
    fake.reply(tokens=["Owl", " facts"])
    ask(client, chat, "Owls?")
    assert title_of(client, chat) == "Mine"


@pytest.mark.parametrize(
    ("said", "title"),
    [
        ('"Train trip to Porto."', "Train trip to Porto"),
        ("Title: **Owls at night**\nMore words", "Owls at night"),
        ("\n\n  # Budget  travel  \n", "Budget travel"),
        ("", ""),
        ("Paris is the capital of **France**", "Paris is the capital of France"),
        ("The `zip` function and *lazy* _iterators_", "The zip function and lazy iterators"),
        ("[Owls](https://example.org/owls) at ~~noon~~ night", "Owls at noon night"),
    ],
)
def test_what_the_model_says_becomes_a_clean_title(said, title):
    assert tidy(said) == title


@pytest.mark.parametrize(
    ("first_message", "title"),
    [
        ("Paris is the capital of **France**?", "Paris is the capital of France?"),
        ("# Plan\n\n- pack **light**\n- book `train`", "Plan pack light book train"),
        ("Is 2 * 3 = 6 and 4 * 5 = 20?", "Is 2 * 3 = 6 and 4 * 5 = 20?"),
        ("Explain " + "**very** " * 20 + "briefly", ("Explain " + "very " * 20)[:59] + "…"),
    ],
)
def test_a_title_made_from_the_first_message_is_plain_text(first_message, title):
    assert title_from(first_message) == title


def test_the_open_tab_sees_the_new_title(tmp_path, fake):
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, MODEL_TITLES="true")
    with GunicornApp(environment, workers=1) as server:
        chat = ChatClient(server.url)
        ws = chat.connect()
        fake.reply(tokens=["Yes"])
        fake.reply(tokens=["Owl", " facts"])
        frames = chat.exchange("Do owls sleep?", ws)
        read_until(ws, frames, 'id="current-title-link" hx-swap-oob="innerHTML">Owl facts</a>', seconds=20)
        assert '<h1 id="conversation-title" hx-swap-oob="true">Owl facts</h1>' in frames[-1]
        ws.close()
