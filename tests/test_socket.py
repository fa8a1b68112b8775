"""The real WebSocket of the app under gunicorn, against the fake Hugging Face API."""

import html
import json
import re
import time

import pytest
import websocket

from chatbot.local_model.server import free_port
from tests.conftest import app_environment
from tests.fakes.hf_server import ROUTER_MODELS, TOKEN
from tests.helpers import NOTES_PARAMETERS, streamed_text
from tests.samples import png
from tests.servers import FINISHED, ChatClient, GunicornApp, act, finished_answer, read_until, shown_answer


def test_a_whole_exchange(instances, fake):
    chat = ChatClient(instances[0].url)
    fake.reply(tokens=["The", " answer", " is", " **42**", " <b>", "."], delay=0.02)
    frames = chat.exchange("What is the answer?")

    sent = fake.requests[-1]
    assert sent.path == "/models/google/gemma-7b-it"
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.json["inputs"] == ("<bos><start_of_turn>user\nWhat is the answer?<end_of_turn>\n<start_of_turn>model\n")
    assert sent.json["parameters"] == NOTES_PARAMETERS
    assert sent.json["options"] == {"wait_for_model": True, "use_cache": False}

    assert 'id="messages" hx-swap-oob="beforeend"' in frames[0]
    assert "What is the answer?" in frames[0] and "assistant streaming" in frames[0]
    assert 'aria-busy="true"' in frames[0]
    assert streamed_text(frames) == "The answer is 42 <b>."
    assert "<strong>42</strong> &lt;b&gt;" in shown_answer(frames[:-1])  # markdown while it streams, HTML escaped
    finished = finished_answer(frames)
    assert FINISHED.search(finished).group(2) == "done"
    assert "The answer is <strong>42</strong> &lt;b&gt;." in finished
    assert 'id="send-button">Send' in finished


MARKDOWN_TOKENS = ["Steps", ":\n\n", "- one", "\n- **two**", "\n\n```python\n", "print(", "1)\n", "x = 2", "\n```\n\n"]
MARKDOWN_TOKENS += ["| a | b |", "\n|---|---|", "\n| 1 | <script> |", "\n\nDone"]
LIVE_TAIL = re.compile(r'<span class="live-tail">[^<]*</span>')
DONE_APPENDED = re.compile(r'<div hx-swap-oob="beforebegin:#open-[\w-]+">(.*?)</div>', re.S)


def test_an_answer_is_shown_as_markdown_while_it_streams(instances, fake):
    chat = ChatClient(instances[0].url)
    writer = chat.connect()
    fake.reply(tokens=MARKDOWN_TOKENS, delay=0.15)  # a flush for each token, or nearly
    act(writer, "send", message="Show me")
    frames = read_until(writer, [], "language-python")
    fence_opened = len(frames)
    follower = chat.via(instances[1].url).connect()  # a second tab opened mid-answer follows it
    followed = read_until(follower, [], FINISHED)
    read_until(writer, frames, FINISHED)
    writer.close()
    follower.close()

    so_far = LIVE_TAIL.sub("", shown_answer(frames[:fence_opened]))  # when the code fence had opened and not yet closed
    assert "<li>one</li>\n<li><strong>two</strong></li>" in so_far and "<table>" not in so_far
    assert re.search(r'</ul>\n<pre><code class="language-python">[^<]*</code></pre>\n$', so_far)
    appended = "".join(DONE_APPENDED.findall("".join(frames)))
    assert appended.count("<li>one</li>") == 1  # a complete block is sent once
    assert "<td>&lt;script&gt;</td>" in shown_answer(frames[:-1]) and "<script>" not in "".join(frames)
    whole = re.search(r'<div class="body markdown">(.*?)</div>', finished_answer(frames), re.S).group(1)
    assert LIVE_TAIL.sub("", shown_answer(frames[:-1])) == whole  # what streamed is what the answer is
    assert "<table>" in whole and "<p>Done</p>" in whole
    assert '<pre><code class="language-python">' in followed[0]  # the answer so far, as markdown
    # A follower reads the store every FOLLOW_SECONDS: what it streamed is the answer's start (all of it unless the
    # answer ended between two reads), and its finished fragment is the whole answer.
    assert whole.startswith(LIVE_TAIL.sub("", shown_answer(followed[:-1])))
    assert whole in finished_answer(followed)


def test_history_is_rebuilt_from_the_store_on_reload(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    fake.reply(tokens=["First", " answer"])
    chat.exchange("first question", ws)
    fake.reply(tokens=["Second", " answer"])
    chat.exchange("second question", ws)
    ws.close()
    assert "First answer" in fake.requests[-1].json["inputs"]
    page = chat.page()
    order = [page.index(text) for text in ("first question", "First answer", "second question", "Second answer")]
    assert order == sorted(order)


def test_the_conversation_survives_a_restart(tmp_path, fake_hf, fake):
    environment = app_environment(tmp_path, API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN)
    with GunicornApp(environment) as server:
        chat = ChatClient(server.url)
        fake.reply(tokens=["Kept"])
        chat.exchange("remember this")
    with GunicornApp(environment) as restarted:
        chat.page_url = chat.page_url.replace(server.url, restarted.url)
        page = chat.page()
    assert "remember this" in page and "Kept" in page


def test_a_cross_site_page_cannot_open_the_socket(gunicorn_on_fake):
    chat = ChatClient(gunicorn_on_fake.url)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        chat.connect(origin="https://evil.example")
    assert refused.value.status_code == 403


def test_another_session_cannot_open_my_conversation(gunicorn_on_fake):
    mine = ChatClient(gunicorn_on_fake.url)
    stranger = ChatClient(gunicorn_on_fake.url)
    stranger.socket_url = mine.socket_url
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        stranger.connect()
    assert refused.value.status_code == 404


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        ({"status": 401, "body": {"error": "Authorization header is required"}}, "HF_API_TOKEN"),
        (
            {"status": 403, "body": {"error": "Access to model google/gemma-7b-it is restricted"}},
            "Ask for access on https://huggingface.co/google/gemma-7b-it",
        ),
        ({"status": 500, "body": {"error": "unknown error"}}, "failed (500: unknown error)"),
        ({"first_delay": 6.0}, "did not answer within 5 s"),
    ],
)
def test_failures_are_shown_in_the_chat_and_the_message_is_kept(gunicorn_on_fake, fake, reply, shown):
    chat = ChatClient(gunicorn_on_fake.url)
    fake.reply(**reply)
    finished = chat.exchange("Hello?")[-1]
    assert FINISHED.search(finished).group(2) == "error"
    assert html.escape(shown, quote=False) in finished
    assert 'role="alert"' in finished
    page = chat.page()
    assert "Hello?" in page and html.escape(shown, quote=False) in page


LOADING = {"status": 503, "body": {"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 2.0}}


def test_a_loading_model_is_waited_for_with_a_countdown(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    fake.reply(**LOADING)
    fake.reply(tokens=["Loaded", " now"])
    frames = chat.exchange("Wake up")
    waits = [frame for frame in frames if "Model is loading" in frame]
    assert "Model is loading, about 2 s" in waits[0] and "Model is loading, about 1 s" in waits[1]
    assert FINISHED.search(frames[-1]).group(2) == "done" and "Loaded now" in finished_answer(frames)
    assert len(fake.requests) == 2


def test_stop_cancels_the_wait_for_a_loading_model(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    fake.reply(status=503, body={"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 60})
    act(ws, "send", message="Wake up")
    frames = [ws.recv()]
    read_until(ws, frames, "Model is loading")
    started = time.monotonic()
    act(ws, "stop")
    read_until(ws, frames, FINISHED)
    ws.close()
    assert time.monotonic() - started < 2
    assert FINISHED.search(frames[-1]).group(2) == "stopped"
    assert len(fake.requests) == 1


@pytest.fixture
def impatient_app(tmp_path, fake_hf):
    """An app of its own (its rate-limit pause must not hold up the other tests) that waits 1 s for loading."""
    environment = app_environment(tmp_path, API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN, MAX_LOADING_WAIT="1")
    with GunicornApp(environment, workers=1) as server:
        yield server


def test_a_rate_limit_is_shown_and_the_api_is_not_asked_again_until_it_said(impatient_app, fake):
    chat = ChatClient(impatient_app.url)
    fake.reply(status=429, body={"error": "Rate limit reached"}, headers={"Retry-After": "60"})
    first = chat.exchange("One")[-1]
    assert "Wait about 60 s before sending again" in first
    second = chat.exchange("Two")[-1]
    assert "nothing was sent" in second and "Try again in about" in second
    assert len(fake.requests) == 1
    assert "One" in chat.page() and "Two" in chat.page()


def test_a_model_still_loading_after_the_limit_is_an_error(impatient_app, fake):
    chat = ChatClient(impatient_app.url)
    fake.reply(**LOADING)
    fake.reply(**LOADING)
    finished = chat.exchange("Wake up")[-1]
    assert FINISHED.search(finished).group(2) == "error"
    assert "is loading" in finished and "Wait until it has loaded" in finished
    assert len(fake.requests) == 2


def test_an_unreachable_backend_is_named_in_the_chat(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/models/google/gemma-7b-it"
    with GunicornApp(app_environment(tmp_path, API_URL=url)) as server:
        chat = ChatClient(server.url)
        finished = chat.exchange("Anyone?")[-1]
        assert f"Could not reach {url}: connection refused." in finished
        assert "Anyone?" in chat.page()


def test_input_problems_get_a_notice(gunicorn_on_fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    act(ws, "send", message="   ")
    assert "Type a message first." in ws.recv()
    act(ws, "send", message="x" * 20_001)
    assert "the limit is 20,000" in ws.recv()
    ws.send("not json")
    assert "could not read that message" in ws.recv()
    ws.close()


def test_a_chat_deleted_or_expired_while_its_tab_is_open_says_so(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    token = re.search(r'name="csrf_token" value="([^"]+)"', chat.page()).group(1)
    chat.http.post(f"{chat.page_url}/delete", data={"csrf_token": token}).raise_for_status()  # another tab
    act(ws, "send", message="Are you still there?")
    assert "has expired" in read_until(ws, [], "notice")[-1]
    assert fake.requests == []
    ws.close()


def test_a_message_sent_the_moment_an_answer_ends_is_taken(gunicorn_on_fake, fake):
    """The socket is free again before the finished answer goes out, so a quick next message is not refused."""
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    for turn in range(40):
        fake.reply(tokens=[f"Answer {turn}"])
        frames = chat.exchange(f"Question {turn}", ws)
        assert not any("Wait for the answer" in frame for frame in frames), turn
    ws.close()


def test_stop_keeps_the_partial_answer_and_one_answer_at_a_time(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    fake.reply(tokens=[f" word{i}" for i in range(50)], delay=0.1)
    act(ws, "send", message="Talk")
    frames = [ws.recv(), ws.recv()]
    act(ws, "send", message="Again")
    read_until(ws, frames, "Wait for the answer to finish")
    act(ws, "stop")
    read_until(ws, frames, FINISHED)
    ws.close()
    assert FINISHED.search(frames[-1]).group(2) == "stopped"
    assert "Stopped: the answer above is partial." in frames[-1]
    assert "word0" in chat.page() and "Again" not in chat.page()


def test_closing_the_tab_does_not_lose_the_answer(instances, fake):
    chat = ChatClient(instances[0].url)
    ws = chat.connect()
    fake.reply(tokens=["Still", " saved", " after", " you", " left"], delay=0.1)
    act(ws, "send", message="Bye")
    ws.recv()
    ws.close()
    deadline = time.monotonic() + 10
    later = chat.via(instances[1].url)
    while "Still saved after you left" not in later.page() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Still saved after you left" in later.page()


def test_regenerate_and_edit_over_the_socket(gunicorn_on_fake, fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    fake.reply(tokens=["First"])
    chat.exchange("Question one", ws)
    fake.reply(tokens=["Second"])
    chat.exchange("Question two", ws)

    fake.reply(tokens=["Second, again"])
    act(ws, "regenerate")
    frames = [ws.recv()]
    read_until(ws, frames, FINISHED)
    assert (
        'id="messages" class="messages"' in frames[0] and "Second" not in frames[0]
    )  # the old answer is a version aside
    assert "Second, again" in finished_answer(frames)
    assert fake.requests[-1].json["inputs"].endswith("Question two<end_of_turn>\n<start_of_turn>model\n")

    first_question = re.search(r'name="message_id" value="([\w-]+)"', chat.page()).group(1)
    fake.reply(tokens=["Edited answer"])
    act(ws, "edit", message_id=first_question, message="Question one, edited")
    frames = [ws.recv()]
    read_until(ws, frames, FINISHED)
    ws.close()
    page = chat.page()
    assert "Question one, edited" in page and "Edited answer" in page
    assert "Question two" not in page and "First" not in page
    assert "Question one<" not in fake.requests[-1].json["inputs"]


def test_regenerate_with_nothing_to_answer(gunicorn_on_fake):
    chat = ChatClient(gunicorn_on_fake.url)
    ws = chat.connect()
    act(ws, "regenerate")
    assert "There is no question to answer again yet." in ws.recv()
    act(ws, "edit", message_id="someone-elses", message="hi")
    assert "can no longer be edited" in ws.recv()
    ws.close()


TALE = [f" word{i}" for i in range(30)]


def test_a_reloaded_tab_follows_the_answer_to_the_end(instances, fake):
    chat = ChatClient(instances[0].url)
    first_tab = chat.connect()
    fake.reply(tokens=TALE, delay=0.1)
    act(first_tab, "send", message="Tell a tale")
    for _ in range(4):
        first_tab.recv()
    first_tab.close()  # the tab goes away mid-answer
    time.sleep(0.5)

    chat = chat.via(instances[1].url)  # the reload: maybe another worker, or another instance
    assert 'id="stop-button"' in chat.page()  # the reloaded page shows that the answer is still coming
    second_tab = chat.connect()
    frames = [second_tab.recv()]
    assert "assistant streaming" in frames[0]
    read_until(second_tab, frames, FINISHED)
    second_tab.close()
    whole = "".join(TALE).strip()
    assert FINISHED.search(frames[-1]).group(2) == "done"
    streamed = streamed_text(frames[:-1])
    assert whole.startswith(streamed) and len(streamed.split()) >= 20  # as it streamed: no word missing or doubled
    assert f"<p>{whole}</p>" in finished_answer(frames)
    assert whole in chat.page()


def test_stop_from_another_tab_stops_the_answer(instances, fake):
    chat = ChatClient(instances[0].url)
    first_tab = chat.connect()
    fake.reply(tokens=TALE, delay=0.2)
    act(first_tab, "send", message="Tell a tale")
    first_tab.recv()
    chat = chat.via(instances[1].url)
    second_tab = chat.connect()
    frames = [second_tab.recv()]
    act(second_tab, "send", message="Another")
    read_until(second_tab, frames, "Wait for the answer to finish")
    act(second_tab, "stop")
    read_until(second_tab, frames, FINISHED)
    assert FINISHED.search(frames[-1]).group(2) == "stopped"
    first_tab.close()
    second_tab.close()
    assert "word29" not in chat.page() and "Another" not in chat.page()


def test_an_answer_whose_writer_went_away_is_marked_interrupted(tmp_path, fake_hf):
    environment = app_environment(tmp_path, API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN)
    with GunicornApp(environment, workers=1) as server:
        chat = ChatClient(server.url)
    from chatbot.stores.conversations import Message, new_id
    from chatbot.stores.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "chat.sqlite3"))
    conversation = store.list_conversations(_owner(store))[0]
    question = store.add_message(Message(new_id(), conversation.id, "user", "Hello"))
    store.add_message(
        Message(
            new_id(),
            conversation.id,
            "assistant",
            "Half an",
            status="streaming",
            meta={"saved_at": time.time() - 600},
            parent_id=question.id,
        )
    )
    with GunicornApp(environment, workers=1) as restarted:
        chat = chat.via(restarted.url)
        ws = chat.connect()
        finished = ws.recv()
        ws.close()
        assert FINISHED.search(finished).group(2) == "error"
        assert "The answer was interrupted" in finished and "Half an" in finished
        assert "The answer was interrupted" in chat.page()


def _owner(store):
    """The one browser session of a fresh store."""
    return store._query("SELECT owner FROM conversations")[0][0]


def test_an_image_sent_on_the_socket_reaches_a_model_that_takes_images_and_is_refused_for_one_that_does_not(
    tmp_path, fake
):
    fake.catalogue = ROUTER_MODELS  # it says which models take images: none of the two needs to be told
    models = [
        {"name": "Seeing", "id": "google/gemma-3-27b-it", "api": "chat", "url": fake.url + "/v1"},
        {"name": "Text only", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    environment = app_environment(
        tmp_path, HF_API_TOKEN=TOKEN, MODELS=json.dumps(models), CHAT_HUB_CACHE=str(tmp_path / "hub")
    )
    with GunicornApp(environment, workers=1) as server:
        chat = ChatClient(server.url)
        token = re.search(r'name="csrf_token" value="([^"]+)"', chat.page()).group(1)
        uploaded = chat.http.post(
            chat.page_url + "/files", files={"file": ("red.png", png())}, headers={"X-CSRF-Token": token}, timeout=30
        )
        file_id = re.search(r'name="attachment" value="([\w-]+)"', uploaded.text).group(1)
        ws = chat.connect()
        act(ws, "send", message="What colour?", attachment=file_id, model="Text only")
        refused = read_until(ws, [], "does not take images")[-1]
        assert "Text only does not take images, so nothing was sent (red.png). Pick a model that takes images" in (
            refused
        )
        assert not [r for r in fake.requests if r.path.endswith("/chat/completions")]
        fake.reply(tokens=["Red", "."])
        act(ws, "send", message="What colour?", attachment=[file_id], model="Seeing")
        frames = read_until(ws, [], FINISHED)
        sent = fake.requests[-1].json
        assert sent["model"] == "google/gemma-3-27b-it"
        assert sent["messages"][-1]["content"][0] == {"type": "text", "text": "What colour?"}
        assert sent["messages"][-1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        started = next(frame for frame in frames if "What colour?" in frame)  # after the header, with the model picked
        assert f'<img src="/c/{chat.conversation_id}/files/{file_id}" alt="red.png"' in started
        assert "Red." in finished_answer(frames)
        fake.reply(tokens=["A red square."])
        act(ws, "send", message="", attachment=file_id)  # an image sent alone
        read_until(ws, [], FINISHED)
        ws.close()
        assert [part["type"] for part in fake.requests[-1].json["messages"][-1]["content"]] == ["image_url"]
        stranger = ChatClient(server.url)
        assert stranger.http.get(chat.page_url + f"/files/{file_id}", timeout=30).status_code == 404
        assert chat.http.get(chat.page_url + f"/files/{file_id}", timeout=30).content == png()
