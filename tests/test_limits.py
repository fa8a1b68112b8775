"""What one browser session and one network address may ask for: answers a minute, new chats and files an hour. Counted
in the store, so the limits hold across workers; past one, the chat says until when and keeps the message."""

import dataclasses
import io
import re
import threading

import pytest

from chatbot.chat.limits import address_key, usage_today
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services.inference import Backend, Parameters
from chatbot.services.prompts import estimate_tokens
from chatbot.stores.memory import MemoryStore
from chatbot.web import create_app
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf, open_chat
from tests.servers import ChatClient, GunicornApp, act, read_until

REFUSED_IN = re.compile(r"Try again in (\d+) s \(at \d\d:\d\d:\d\d UTC\)")


@pytest.fixture
def limited_app(tmp_path, fake):
    def make(**limits):
        settings = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/chat.sqlite3"}
        settings.update(API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, MAX_LOADING_WAIT=0.0, **limits)
        return create_app(settings)

    return make


def browser(app, address):
    """A browser of its own (a cookie jar) at a network address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def post_message(client, chat, text):
    return client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": text})


def test_answers_a_minute_per_session_hold_across_workers(tmp_path, fake):
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, MESSAGES_PER_MINUTE="3")
    with GunicornApp(environment, workers=2) as server:
        chat = ChatClient(server.url)
        for turn in range(3):  # a new socket each time: they land on both workers
            fake.reply(tokens=[f"Answer {turn}"])
            assert f"Answer {turn}" in chat.exchange(f"Question {turn}")[-1]
        ws = chat.connect()
        act(ws, "send", message="One more")
        refused = read_until(ws, [], 'id="notice"', seconds=20)[-1]
        ws.close()
    assert "This browser has asked for 3 answers this minute, the most this chat allows." in refused
    assert "your message is still in the box" in refused and "data-sent-now" not in refused
    assert 0 < int(REFUSED_IN.search(refused).group(1)) <= 60
    assert len(fake.requests) == 3


def test_answers_per_address_count_every_session_of_that_address(limited_app, fake):
    app = limited_app(MESSAGES_PER_MINUTE=3, MESSAGES_PER_MINUTE_PER_ADDRESS=4)
    first, second = browser(app, "203.0.113.7"), browser(app, "203.0.113.7")
    elsewhere = browser(app, "198.51.100.1")
    chats = {client: open_chat(client) for client in (first, second, elsewhere)}
    for _ in range(3):
        assert post_message(first, chats[first], "Hi").status_code == 302
    refused = post_message(first, chats[first], "My fourth question")
    assert refused.status_code == 429 and "This browser has asked for 3 answers this minute" in refused.text
    assert ">My fourth question</textarea>" in refused.text  # the message stays in the box
    assert post_message(second, chats[second], "Hi").status_code == 302  # the address's fourth
    by_address = post_message(second, chats[second], "And again")
    assert by_address.status_code == 429
    assert "Your network address has asked for 4 answers this minute" in by_address.text
    assert post_message(elsewhere, chats[elsewhere], "Hi").status_code == 302
    assert len(fake.requests) == 5


def test_new_chats_an_hour_per_session_and_per_address(limited_app):
    app = limited_app(CONVERSATIONS_PER_HOUR=2, CONVERSATIONS_PER_HOUR_PER_ADDRESS=3)
    client = browser(app, "203.0.113.7")
    chat = open_chat(client)  # the first visit makes the first chat
    token = csrf(client.get(chat).text)
    assert client.post("/c", data={"csrf_token": token}).location == chat  # empty: gone back to, not counted
    client.post(f"{chat}/rename", data={"csrf_token": token, "title": "First"})  # no longer New chat's to reuse
    second = client.post("/c", data={"csrf_token": token}).location
    assert second != chat
    client.post(f"{second}/rename", data={"csrf_token": token, "title": "Second"})
    refused = client.post("/c", data={"csrf_token": token})
    assert refused.status_code == 429
    assert "This browser has asked for 2 new chats this hour" in refused.text
    assert "carry on in one of your chats" in refused.text
    assert open_chat(browser(app, "203.0.113.7")).startswith("/c/")  # a new session: the address's third
    cookieless = browser(app, "203.0.113.7").get("/")  # a script that drops its cookie makes none
    assert cookieless.status_code == 429 and "Your network address has asked for 3 new chats" in cookieless.text
    assert open_chat(browser(app, "198.51.100.1")).startswith("/c/")


def test_attached_files_an_hour_per_session_and_per_address(limited_app):
    app = limited_app(FILES_PER_HOUR=2, FILES_PER_HOUR_PER_ADDRESS=3)

    def upload(client, name):
        chat = open_chat(client)
        token = csrf(client.get(chat).text)
        return client.post(
            f"{chat}/files", data={"file": (io.BytesIO(b"notes"), name)}, headers={"X-CSRF-Token": token}
        )

    first, second = browser(app, "203.0.113.7"), browser(app, "203.0.113.7")
    assert upload(first, "a.txt").status_code == 200 and upload(first, "b.txt").status_code == 200
    refused = upload(first, "c.txt")
    assert refused.status_code == 400 and "This browser has asked for 2 attached files this hour" in refused.text
    assert "send your message without it" in refused.text
    assert upload(second, "d.txt").status_code == 200  # the address's third
    by_address = upload(second, "e.txt")
    assert "Your network address has asked for 3 attached files this hour" in by_address.text


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),  # one home, one /64
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
    ],
)
def test_an_address_is_counted_by_whom_it_stands_for(address, counted_as):
    assert address_key(address) == counted_as


def test_answers_written_at_once_never_pass_the_tokens_of_a_day_together(fake):
    """Each answer sets aside its prompt and max new tokens before it is asked for: eight at once under a limit of
    1,000 are cut or refused, never let through together (they used 8,080 when the limit was only read)."""
    store = MemoryStore()
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="m", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters(max_new_tokens=250), tokens_per_day=1000)
    for _ in range(8):
        fake.reply(tokens=["word "] * 250, delay=0.002)
    answers = []

    def answer() -> None:
        conversation = store.create_conversation("alice")
        answers.append(run_reply(store, conversation, "Write 250 words.", settings, lambda event: None))

    threads = [threading.Thread(target=answer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert usage_today(store, "alice")[1] <= 1000
    asked = sum(request.json["max_tokens"] for request in fake.requests)
    assert asked <= 1000 - 10 * len(fake.requests)  # each prompt is set aside too
    refused = [a for a in answers if a.status == "error"]
    assert len(refused) == 8 - len(fake.requests) >= 4
    # used up, or (once an answer gave back what its estimate overshot) too few left for the prompt
    assert all(a.error["kind"] == "limit" and a.error["message"].startswith("Your account has ") for a in refused)


def test_an_answer_is_cut_to_the_tokens_left_today_and_counted_as_the_server_counts(fake):
    store = MemoryStore()
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="m", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters(max_new_tokens=250), tokens_per_day=300)
    unlimited = dataclasses.replace(settings, tokens_per_day=0)
    fake.reply(tokens=["word "] * 5)
    run_reply(store, store.create_conversation("bob"), "Write 5 words.", unlimited, lambda event: None)
    assert usage_today(store, "bob")[1] == 15  # counted without a limit too, as the server counted

    fake.reply(tokens=["word "] * 250)
    first = run_reply(store, store.create_conversation("alice"), "Write 250 words.", settings, lambda event: None)
    assert fake.requests[-1].json["max_tokens"] == 250 and first.meta["tokens"] == 250
    assert usage_today(store, "alice")[1] == 260  # the server's count: 10 for the prompt, 250 for the answer

    fake.reply(tokens=["word "] * 250)
    second = run_reply(store, store.create_conversation("alice"), "More.", settings, lambda event: None)
    assert fake.requests[-1].json["max_tokens"] == 300 - 260 - estimate_tokens("More.")
    assert second.status == "done" and second.meta["finish_reason"] == "length"
    assert usage_today(store, "alice")[1] == 260 + 10 + second.meta["tokens"] <= 300 + 10
