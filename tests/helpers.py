"""What many test files use: forms with their CSRF token, accounts, a recorded reply, a socket's close code."""

import html
import re
import time

import websocket

from chatbot.chat.reply_settings import ReplySettings
from chatbot.services.inference import Backend, Parameters
from chatbot.stores.memory import MemoryStore
from tests.fakes.hf_server import TOKEN
from tests.servers import shown_answer


def open_chat(client):
    response = client.get("/")
    assert response.status_code == 302
    return response.location


def csrf(page_html):
    return re.search(r'name="csrf_token" value="([^"]+)"', page_html).group(1)


def first_message_id(page_html):
    """The id of the first message the page shows (its "New chat from here" button names it)."""
    return re.search(r'form="fork-form" class="icon-action" name="message_id" value="([\w-]+)"', page_html).group(1)


PASSWORD = "correct horse battery"


def sign_up(client, username, password=PASSWORD, path="/sign-up", **fields):
    """Post the sign-up form as a browser would (a page with a form first, for the session's CSRF token)."""
    client.get(path)
    token = csrf(client.get("/sign-in").text)
    return client.post(path, data={"csrf_token": token, "username": username, "password": password, **fields})


def sign_in(client, username, password=PASSWORD):
    token = csrf(client.get("/sign-in").text)
    return client.post("/sign-in", data={"csrf_token": token, "username": username, "password": password})


def post(client, path, **fields):
    """Post a form with the session's CSRF token, as a page of the chat holds it."""
    page = client.get("/", follow_redirects=True).text
    return client.post(path, data={"csrf_token": csrf(page), **fields})


def settings_for(url, token=TOKEN, **fields):
    backend = Backend(api="text-generation", url=url, model_id="google/gemma-7b-it", token=token, read_timeout=5)
    return ReplySettings(backend=backend, **{"parameters": Parameters(), **fields})


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append((time.monotonic(), event.kind, event.text))

    def kinds(self):
        return [kind for _, kind, _ in self.events]


def new_store():
    """A store for a test that is not about the store, and a conversation of alice's in it."""
    store = MemoryStore()
    return store, store.create_conversation("alice")


def closed_with(ws: websocket.WebSocket) -> int:
    """The code of the close frame the server sends next (the socket is shut then)."""
    opcode, frame = ws.recv_data_frame(control_frame=True)
    ws.shutdown()
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    return int.from_bytes(frame.data[:2], "big")


def streamed_text(frames):
    """The text of the answer as a tab shows it after `frames`, markup left out."""
    return html.unescape(re.sub(r"<[^>]+>", "", shown_answer(frames))).strip()


# The parameters of the user's notes, as a Gemma request sends them.
NOTES_PARAMETERS = {
    "max_new_tokens": 250,
    "temperature": 0.7,
    "top_p": 0.9,
    "do_sample": True,
    "return_full_text": False,
    "stop": ["<end_of_turn>"],
}
