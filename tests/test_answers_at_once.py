"""At most MAX_ANSWERS_AT_ONCE answers of one person being written at once, in all their chats: one more is refused
before anything is sent, in words that say what to do, its message kept in the box, over the socket and without
JavaScript; another person is not held back, and once one ends another may start. (The store suite,
tests/test_store.py, checks on every store that sends at one instant never pass it together, and that a crashed
writer does not hold its slot.)"""

from __future__ import annotations

import time

import pytest

from chatbot.chat import answers_at_once
from chatbot.web import create_app
from tests.fakes.hf_server import TOKEN
from tests.fakes.websocket import SAID, SocketTab
from tests.helpers import csrf, open_chat
from tests.servers import FINISHED

TWO_AT_ONCE = "You have 2 answers being written; wait for one to finish or stop one."


@pytest.fixture
def app(fake, tmp_path):
    settings = {"TESTING": True, "SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/chat.sqlite3"}
    return create_app(
        {
            **settings,
            "API_URL": fake.task_url(),
            "HF_API_TOKEN": TOKEN,
            "MAX_LOADING_WAIT": 0.0,
            "MAX_ANSWERS_AT_ONCE": 2,
        }
    )


def send_by_form(client, chat: str, text: str):
    return client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": text})


def test_a_third_answer_at_once_in_another_chat_is_refused_before_it_is_sent_and_another_person_is_not(app, fake):
    store = app.extensions["chat_store"]
    client = app.test_client()
    chat = open_chat(client)
    with client.session_transaction() as session:
        owner = session["owner"]
    writing = [SocketTab(app, store.create_conversation(owner)) for _ in range(2)]
    try:
        for tab in writing:
            fake.reply(tokens=["Slowly", *[" more"] * 200], delay=0.1)
            tab.ws.wait_for("Slowly", after=tab.send("send", message="Write at length"))
        asked = len(fake.requests)
        refused = send_by_form(client, chat, "A third one")
        assert refused.status_code == 429 and TWO_AT_ONCE in refused.text
        assert ">A third one</textarea>" in refused.text  # the message stays in the box
        tab = SocketTab(app, store.create_conversation(owner))
        said = SAID.search(tab.act("send", message="A fourth one"))
        tab.close()
        assert said is not None and said["words"] == TWO_AT_ONCE  # and the page's script keeps the box as it is
        assert (
            len(fake.requests) == asked and store.messages(store.get_conversation(owner, chat.rsplit("/", 1)[1])) == []
        )

        someone_else = app.test_client()
        fake.reply(tokens=["Yours."])
        assert send_by_form(someone_else, open_chat(someone_else), "Mine").status_code == 302

        writing[0].ws.wait_for(FINISHED, after=writing[0].send("stop"))
        deadline = time.monotonic() + 5
        while len(store.records(answers_at_once.KIND)) > 2:  # the stopped one lets go of its slots (session, address)
            assert time.monotonic() < deadline, "the stopped answer still holds its slot"
            time.sleep(0.02)
        fake.reply(tokens=["Now."])
        assert send_by_form(client, chat, "A third one").status_code == 302
        assert "Now." in client.get(chat).text
    finally:
        for tab in writing:
            tab.send("stop")
            tab.close()
