"""Request limits that hold against a hostile client: bodies, cookies."""

import io
import json
import re
import socket
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

from chatbot.chat import transfer
from chatbot.chat.branches import Tree
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.local_model.server import free_port
from chatbot.services import discovery
from chatbot.services.errors import InferenceError
from chatbot.services.inference import Backend, Parameters
from chatbot.web import create_app
from chatbot.web.security import trusted_hosts
from config import ConfigError, load_config
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf
from tests.servers import FINISHED, ChatClient, act, finished_answer, read_until


def test_a_body_over_the_limit_gets_413_before_it_is_read(gunicorn_on_fake):
    """500 MB announced, a few bytes sent: the answer comes at once, so the body was never waited for."""
    with socket.create_connection(("127.0.0.1", gunicorn_on_fake.port), timeout=10) as raw:
        raw.sendall(
            b"POST /c HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 524288000\r\n\r\ncsrf_token=x"
        )
        started = time.monotonic()
        answer = raw.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5


def test_an_import_over_the_limit_says_how_large_it_may_be(gunicorn_on_fake):
    chat = ChatClient(gunicorn_on_fake.url)
    token = chat.page().split('name="csrf_token" value="')[1].split('"')[0]
    large = io.BytesIO(b"x" * (31 * 1024 * 1024))  # 10 MB for the form, and 4 attached files of 5 MB
    response = chat.http.post(
        gunicorn_on_fake.url + "/import", data={"csrf_token": token}, files={"file": ("a.json", large)}, timeout=30
    )
    assert response.status_code == 413
    assert "That upload is larger than 30 MB." in response.text


def test_the_session_cookie_is_samesite_lax_and_lives_as_long_as_a_conversation(tmp_path):
    app = create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "SESSION_IDLE_DAYS": 2.0})
    cookie = app.test_client().get("/").headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0]).timestamp()
    assert abs(expires - (time.time() + 2 * 86400)) < 120


def test_a_rebound_host_name_gets_400_on_pages_and_the_socket(gunicorn_on_fake):
    """DNS rebinding: evil.example resolves to 127.0.0.1; the browser sends Host and Origin evil.example."""
    evil = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert requests.get(gunicorn_on_fake.url + "/", headers=evil, timeout=10).status_code == 400
    chat = ChatClient(gunicorn_on_fake.url)
    socket_path = f"/c/{chat.conversation_id}/socket"
    upgrade = {**evil, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    cookies = chat.http.cookies.get_dict()
    refused = requests.get(gunicorn_on_fake.url + socket_path, headers=upgrade, cookies=cookies, timeout=10)
    assert refused.status_code == 400
    for fine in ("127.0.0.1", "localhost"):
        assert requests.get(gunicorn_on_fake.url + "/healthz", headers={"Host": fine}, timeout=10).ok


@pytest.mark.parametrize(
    ("settings", "allowed"),
    [
        ({}, ["127.0.0.1", "localhost", "::1"]),  # make run, the tests: bound to loopback
        ({"CHAT_BIND": ("127.0.0.1:8000",)}, ["127.0.0.1", "localhost", "::1"]),
        ({"CHAT_BIND": ("0.0.0.0:8000",)}, None),  # reachable by every name anyway
        ({"CHAT_BIND": ("0.0.0.0:8000",), "ALLOWED_HOSTS": ("chat.example.com",)}, ["chat.example.com"]),
    ],
)
def test_which_host_names_are_trusted(settings, allowed):
    hosts = trusted_hosts(load_config({"AUTH": "none"}, overrides=settings))
    assert hosts == allowed if allowed is None else set(allowed) <= set(hosts)


def test_behind_a_proxy_the_public_name_must_be_given():
    with pytest.raises(ConfigError, match="set ALLOWED_HOSTS to the public name"):
        load_config({"PROXY_COUNT": "1"})
    assert load_config({"PROXY_COUNT": "1", "ALLOWED_HOSTS": "chat.example.com", "AUTH": "local"})["ALLOWED_HOSTS"] == (
        "chat.example.com",
    )
    with pytest.raises(ConfigError, match="without scheme or port"):
        load_config({"ALLOWED_HOSTS": "https://chat.example.com"})


def test_forwarded_addresses_are_believed_only_from_the_trusted_proxy(make_app):
    """With PROXY_COUNT, a client that reaches gunicorn directly named any address it liked in X-Forwarded-For,
    and dodged every limit per address."""
    app = make_app(PROXY_COUNT=1, ALLOWED_HOSTS=("chat.example.org",), TRUSTED_PROXY_ADDRESSES=("10.0.0.2",))

    def sign_ups(peer: str) -> list[int]:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = peer
        token = csrf(client.get("/sign-up", headers={"Host": "chat.example.org"}).text)
        return [
            client.post(
                "/sign-up",
                data={"csrf_token": token, "username": f"someone{n}", "password": "correct horse battery"},
                headers={"Host": "chat.example.org", "X-Forwarded-For": f"203.0.113.{n}"},
            ).status_code
            for n in range(11)
        ]

    assert 429 not in sign_ups("10.0.0.2")  # the proxy: each forwarded address has its own ten tries
    assert sign_ups("198.51.100.1")[-1] == 429  # a client of its own: counted as what it is


def test_a_host_name_the_chat_does_not_serve_gets_400_with_accounts_too(make_app, caplog):
    client = make_app().test_client()
    for method in (client.get, client.post):
        answer = method("/", headers={"Host": "evil.example"})
        assert answer.status_code == 400
    assert "Traceback" not in caplog.text and "Exception on" not in caplog.text


def test_credentials_in_api_url_never_reach_a_message(tmp_path):
    url = f"http://alice:s3cret@127.0.0.1:{free_port()}/v1"
    app = create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": url})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503 and "s3cret" not in ready.text and "alice" not in ready.text
    error = InferenceError.unreachable(url + "/chat/completions", ConnectionRefusedError("Connection refused"))
    assert "s3cret" not in error.message and "127.0.0.1" in error.message


def test_a_system_prompt_is_no_larger_than_a_message(client, fake):
    page = client.get("/", follow_redirects=True)
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    chat = page.request.path
    refused = client.post(f"{chat}/settings", data={"csrf_token": token, "system_prompt": "x" * 20_001})
    assert refused.status_code == 400
    assert "the system prompt has 20,001 characters; the limit is 20,000" in refused.text


def test_a_lone_surrogate_breaks_nothing_from_the_socket_an_import_or_the_backend(instances, fake):
    """On SQLite and on Redis: a message with "\\ud800", an import with "\\ud83d", an emoji split across events."""
    chat = ChatClient(instances[0].url)
    ws = chat.connect()
    fake.reply(tokens=["x\ud83d", "\ude00y"])  # the fake writes them as JSON escapes, one half per event
    ws.send('{"action": "send", "message": "lone \\ud800 half"}')
    frames = read_until(ws, [], FINISHED)
    ws.close()
    assert FINISHED.search(frames[-1]).group(2) == "done" and "x😀y" in finished_answer(frames)
    base = chat.page_url.replace(instances[0].url, instances[1].url)
    later = chat.via(instances[1].url)
    assert "lone \ufffd half" in later.page()
    for path in ("/export.md", "/export.json"):
        assert later.http.get(base + path, timeout=10).status_code == 200
    assert later.http.get(instances[1].url + "/", timeout=10).status_code == 200
    token = later.page().split('name="csrf_token" value="')[1].split('"')[0]
    export = {
        "format": "chatbot-conversation",
        "version": 1,
        "title": "half \ud83d",
        "messages": [{"role": "user", "content": "a \ud83d b"}],
    }
    body = json.dumps(export).encode()  # ensure_ascii: the lone half as the escape "\ud83d"
    imported = later.http.post(
        instances[1].url + "/import", data={"csrf_token": token}, files={"file": ("x.json", body)}, timeout=10
    )
    assert imported.status_code == 200 and "a \ufffd b" in imported.text


def test_a_deeply_nested_import_is_refused_with_a_notice(client):
    page = client.get("/", follow_redirects=True).text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    nested = b"[" * 100_000 + b"]" * 100_000
    response = client.post("/import", data={"csrf_token": token, "file": (io.BytesIO(nested), "deep.json")})
    assert response.status_code == 400
    assert "Nothing was imported: That JSON is nested far too deep" in response.text


def test_a_token_echoed_by_the_backend_reaches_no_page_export_or_error(store, fake):
    """Cut between two events, inside an error event, in a page that is not an answer: always hidden."""
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="m", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    seen = []
    conversation = store.create_conversation("alice")
    fake.reply(tokens=["Your key: ", TOKEN[:9], TOKEN[9:], " (echoed)"])
    answer = run_reply(store, conversation, "Echo", settings, lambda event: seen.append(event.text))
    assert answer.content == "Your key: hf_*** (echoed)"
    assert TOKEN not in "".join(seen) and TOKEN[9:] not in "".join(seen)
    assert TOKEN not in transfer.as_json(conversation, Tree(store.messages(conversation)))
    fake.reply(tokens=["Par"], error_event={"error": f"Bearer {TOKEN} is not allowed here"})
    failed = run_reply(store, conversation, "Again", settings, lambda event: None)
    assert (
        failed.error["kind"] == "generation"
        and TOKEN not in failed.error["message"]
        and "hf_***" in failed.error["message"]
    )
    fake.reply(page=f"<html>Authorization: Bearer {TOKEN}</html>")
    malformed = run_reply(store, conversation, "Once more", settings, lambda event: None)
    assert malformed.error["kind"] == "malformed" and TOKEN not in malformed.error["message"]


def test_the_hub_gets_the_token_only_for_a_model_hugging_face_serves(fake):
    local = Backend(api="completions", url=fake.url + "/v1", model_id="google/gemma-2b-it", token="local-server-key")
    discovery.with_server_facts(local)
    [hub] = [lookup for lookup in fake.lookups if "tokenizer_config.json" in lookup.path]
    assert "Authorization" not in hub.headers
    fake.lookups.clear()
    hf_url = "https://router.huggingface.co/hf-inference/models/org/m"  # servers are not asked: nothing leaves
    endpoint = Backend(api="text-generation", url=hf_url, model_id="org/m", token=TOKEN)
    discovery.with_server_facts(endpoint)
    [hub] = [lookup for lookup in fake.lookups if "tokenizer_config.json" in lookup.path]
    assert hub.headers["Authorization"] == f"Bearer {TOKEN}"


def test_six_sockets_sending_at_once_get_one_answer(instances, fake):
    """Six tabs (on every worker of one or two instances) press Send in the same instant: one answer is written,
    the five others are told to wait, and the conversation holds one question and one answer."""
    chat = ChatClient(instances[0].url)
    tabs = [(chat if i % 2 == 0 else chat.via(instances[1].url)).connect() for i in range(6)]
    fake.reply(tokens=["Only", " one"], delay=0.2)
    go = threading.Barrier(len(tabs))

    def press_send(ws):
        go.wait()
        act(ws, "send", message="Hello from every tab")

    pressing = [threading.Thread(target=press_send, args=(ws,)) for ws in tabs]
    for thread in pressing:
        thread.start()
    for thread in pressing:
        thread.join()
    outcomes = []
    for ws in tabs:
        frames = read_until(ws, [], re.compile("Wait for the answer to finish|Only one"), seconds=20)
        outcomes.append("waited" if "Wait for the answer" in frames[-1] else "answered")
        ws.close()
    assert sorted(outcomes) == ["answered"] + ["waited"] * 5
    deadline = time.monotonic() + 10
    while chat.page().count("Only one") != 1 or 'class="message assistant done"' not in chat.page():
        assert time.monotonic() < deadline, "the one answer did not end"
        time.sleep(0.2)
    assert chat.page().count("Hello from every tab</div>") == 1
    assert len(fake.requests) == 1
