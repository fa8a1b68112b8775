"""Sign-in: never open by accident, accounts (AUTH=local), a trusted proxy's user (AUTH=header), sessions that
end everywhere at once, chats that follow the account, the admin page, and limits per account."""

import contextlib
import json
import re
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests
import websocket

from chatbot.chat import accounts
from chatbot.stores.memory import MemoryStore
from chatbot.web import auth
from config import ConfigError, load_config
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.fakes.websocket import SocketTab
from tests.helpers import PASSWORD, closed_with, csrf, post, sign_in, sign_up
from tests.servers import FINISHED, REDIS_ACCOUNTS_URL, ROOT, ChatClient, GunicornApp, act, read_until


def test_the_chat_will_not_start_open_on_a_public_address(tmp_path):
    with pytest.raises(ConfigError, match=r"reachable from other machines \(on 0.0.0.0:8000\) and has no sign-in"):
        load_config({"CHAT_BIND": "0.0.0.0:8000"})
    with pytest.raises(ConfigError, match=r"behind a proxy"):
        load_config({"PROXY_COUNT": "1", "ALLOWED_HOSTS": "chat.example.org"})
    assert load_config({})["AUTH"] == "none" and not load_config({})["OPEN_TO_ANYONE"]  # make run: 127.0.0.1
    assert load_config({"CHAT_BIND": "0.0.0.0:8000", "AUTH": "none"})["OPEN_TO_ANYONE"]
    environment = {**app_environment(tmp_path), "AUTH": ""}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:0", "wsgi:app"]
    started = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert started.returncode == 4
    assert "Cannot start the chat: The chat is reachable from other machines (on 0.0.0.0:0)" in started.stderr
    assert "AUTH=local" in started.stderr and "AUTH=none" in started.stderr


def test_an_open_chat_on_a_public_address_says_so(make_app):
    app = make_app(AUTH="none", CHAT_BIND=("0.0.0.0:80",))
    page = app.test_client().get("/", follow_redirects=True).text
    assert "This chat is open to anyone who reaches it (AUTH=none)" in page


def test_the_first_account_is_the_admin_and_later_ones_wait_for_approval(make_app):
    app = make_app()
    admin, later = app.test_client(), app.test_client()
    assert admin.get("/").location == "/sign-up"  # no account yet: the first visit signs up
    assert admin.get("/c/anything/export.json").location == "/sign-up"
    assert "No account yet: you are the first, and your account will be the admin" in admin.get("/sign-up").text
    assert sign_up(admin, "ada").status_code == 302  # the first: signed in at once
    assert "Signed in as <strong>ada</strong>" in admin.get("/", follow_redirects=True).text

    waiting = sign_up(later, "bob")
    assert waiting.status_code == 202 and "waits for an admin's approval" in waiting.text
    refused = sign_in(later, "bob")  # read as a wrong password: a waiting account is no sign of a taken name
    assert refused.status_code == 401 and "once an admin has let it in" in refused.text
    assert later.get("/admin/").status_code == 302  # not signed in: to the sign-in page
    assert post(admin, "/admin/accounts/bob", action="approve").status_code == 200
    assert sign_in(later, "bob").status_code == 302
    assert later.get("/admin/").status_code == 403  # signed in, not an admin
    assert "That username is taken" not in sign_up(app.test_client(), "ada").text  # names are not listed


def test_a_first_visit_signs_up_until_an_account_exists_then_signs_in(make_app, on_redis):
    app = make_app()
    assert app.test_client().get("/").location == "/sign-up"
    sign_up(app.test_client(), "ada")
    assert app.test_client().get("/").location == "/sign-in"
    assert app.test_client().get("/c/anything").location == "/sign-in"
    reachable, _ = on_redis  # the admin signs up with the setup code
    assert reachable().test_client().get("/").location == "/sign-up"
    assert sign_up(reachable().test_client(), "bob").status_code == 403  # no setup code: nothing made
    named = reachable(ADMINS=("root",))
    assert named.test_client().get("/").location == "/sign-up"
    assert sign_up(named.test_client(), "bob").status_code == 202  # waits for root, and is an account
    assert named.test_client().get("/").location == "/sign-in"


def test_a_waiting_account_is_counted_by_the_admin_link_for_admins_only(make_app):
    app = make_app()
    admin, bob, cy = app.test_client(), app.test_client(), app.test_client()
    sign_up(admin, "ada")
    link = '<a href="/admin/" class="admin-link">Admin</a>'
    assert link in admin.get("/", follow_redirects=True).text  # nobody waits: no badge
    sign_up(bob, "bob")
    sign_up(cy, "cy")
    page = admin.get("/", follow_redirects=True).text
    assert '>Admin<span class="badge"><span aria-hidden="true"> (2)</span>' in page  # read "Admin (2)"
    assert '<span class="visually-hidden">: 2 people wait for approval</span></span></a>' in page  # heard
    post(admin, "/admin/accounts/bob", action="approve")
    assert ": 1 person waits for approval" in admin.get("/", follow_redirects=True).text
    sign_in(bob, "bob")
    assert "admin-link" not in bob.get("/", follow_redirects=True).text  # not an admin: no link, no count


def test_the_last_active_admin_cannot_be_disabled_or_demoted_even_by_themselves(make_app):
    app = make_app()
    admin, other = app.test_client(), app.test_client()
    sign_up(admin, "ada")
    sign_up(other, "bob")
    only = "ada is the only active admin; make another admin first."
    for action in ("disable", "remove-admin"):
        refused = post(admin, "/admin/accounts/ada", action=action)
        assert refused.status_code == 400 and f"Nothing was changed: {only}" in refused.text
    post(admin, "/admin/accounts/bob", action="make-admin")  # an admin, but still waiting: not active
    assert post(admin, "/admin/accounts/ada", action="remove-admin").status_code == 400
    post(admin, "/admin/accounts/bob", action="approve")
    assert post(admin, "/admin/accounts/ada", action="remove-admin").status_code == 200  # bob is one now
    assert admin.get("/admin/").status_code == 403
    sign_in(other, "bob")
    refused = post(other, "/admin/accounts/bob", action="disable")
    assert "bob is the only active admin; make another admin first." in refused.text
    assert other.get("/", follow_redirects=True).status_code == 200  # still signed in: nothing was changed


def test_the_last_admin_rule_counts_only_other_active_admins():
    store = MemoryStore()
    ada = accounts.create(store, "ada", PASSWORD, admin=True)
    bob = accounts.create(store, "bob", PASSWORD, admin=True)
    assert accounts.last_admin_problem(store, ada) is None  # bob is another
    bob.status = "disabled"
    accounts.save(store, bob)
    assert accounts.last_admin_problem(store, ada) == "ada is the only active admin; make another admin first."
    assert accounts.last_admin_problem(store, bob) is None  # not an active admin: nothing to keep
    assert accounts.last_admin_problem(store, accounts.create(store, "cy", PASSWORD)) is None


def test_wrong_names_and_passwords_look_the_same_and_attempts_are_limited(make_app):
    app = make_app()
    sign_up(app.test_client(), "ada")
    client = app.test_client()
    unknown, wrong = sign_in(client, "nobody"), sign_in(client, "ada", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.text.replace("nobody", "ada") == wrong.text
    for _ in range(9):
        sign_in(client, "ada", "still wrong")
    limited = sign_in(client, "ada")  # the 11th try for this account in 15 minutes, right or not
    assert limited.status_code == 429 and "Too many sign-in attempts" in limited.text


def test_chats_follow_the_account_and_no_one_else_reads_them(make_app, fake):
    anonymous = make_app(AUTH="none").test_client()
    before = anonymous.get("/").location  # a chat made in this browser before it signed in
    app = make_app()  # the same store and key, now with accounts
    browser, phone, stranger = app.test_client(), app.test_client(), app.test_client()
    browser.set_cookie("session", anonymous.get_cookie("session").value)
    sign_up(browser, "ada")
    assert browser.get(before).status_code == 200  # kept, and now the account's
    sign_up(stranger, "eve")
    post(browser, "/admin/accounts/eve", action="approve")
    sign_in(stranger, "eve")
    chat = browser.get("/").location
    fake.reply(tokens=["Lisbon"])
    post(browser, f"{chat}/messages", message="Plan a trip")
    sign_in(phone, "ada")
    assert "Lisbon" in phone.get(chat).text  # the same chats on another device
    for path in (chat, f"{chat}/export.json"):
        assert stranger.get(path).status_code == 404
    assert post(stranger, f"{chat}/messages", message="Mine now").status_code == 404
    assert anonymous.get(before).status_code == 404  # the browser's session no longer holds it


def test_signing_out_everywhere_and_disabling_end_every_session_at_once(make_app):
    app = make_app()
    admin, laptop, phone = app.test_client(), app.test_client(), app.test_client()
    sign_up(admin, "ada")
    sign_up(laptop, "bob")
    post(admin, "/admin/accounts/bob", action="approve")
    sign_in(laptop, "bob")
    sign_in(phone, "bob")
    post(laptop, "/sign-out")
    assert laptop.get("/").location == "/sign-in" and phone.get("/").status_code == 302  # phone: still in
    assert phone.get("/").location.startswith("/c/")
    sign_in(laptop, "bob")
    post(phone, "/sign-out-everywhere")
    assert laptop.get("/").location == "/sign-in"
    sign_in(laptop, "bob")
    post(admin, "/admin/accounts/bob", action="disable")
    assert laptop.get("/").location == "/sign-in"
    assert sign_in(laptop, "bob").status_code == 401  # disabled: the same words as a wrong password
    assert post(admin, "/admin/accounts/ada", action="disable").status_code == 400  # the only active admin


def test_the_admin_page_is_for_admins_and_its_forms_need_csrf(make_app):
    app = make_app()
    admin, other = app.test_client(), app.test_client()
    sign_up(admin, "ada")
    sign_up(other, "bob")
    assert admin.post("/admin/accounts/bob", data={"action": "approve"}).status_code == 400  # no CSRF token
    post(admin, "/admin/accounts/bob", action="approve")
    sign_in(other, "bob")
    for path, fields in (
        ("/admin/accounts/ada", {"action": "disable"}),
        ("/admin/settings", {}),
        ("/admin/invitations", {}),
    ):
        assert post(other, path, **fields).status_code == 403
    reset = post(admin, "/admin/accounts/bob", action="reset-password")
    password = re.search(r"new password is (\S+) \(shown once", reset.text).group(1)
    assert other.get("/").location == "/sign-in"  # a new password ends bob's sessions
    assert sign_in(other, "bob", password).status_code == 302
    assert post(admin, "/admin/accounts/bob", action="make-admin").status_code == 200
    assert other.get("/admin/").status_code == 200


def test_invitations_only(make_app):
    app = make_app()
    admin = app.test_client()
    sign_up(admin, "ada")
    post(admin, "/admin/settings", signups="invitation", messages_per_minute="20", tokens_per_day="100000")
    refused = sign_up(app.test_client(), "bob")
    assert refused.status_code == 403 and "by invitation only" in refused.text
    link = re.search(
        r"Invitation link \(one account, 7 days\): http://localhost(/join/\S+)<", post(admin, "/admin/invitations").text
    ).group(1)
    invited = app.test_client()
    assert sign_up(invited, "bob", path=link).status_code == 302  # active at once
    assert invited.get("/").location.startswith("/c/")
    assert app.test_client().get(link).status_code == 404  # used up


def test_limits_per_account_are_shown_before_they_are_reached(make_app, fake):
    app = make_app()
    admin = app.test_client()
    sign_up(admin, "ada")
    post(admin, "/admin/settings", signups="approval", messages_per_minute="2", tokens_per_day="5")
    chat = admin.get("/").location
    assert "2 of 2 messages left this minute · 5 of 5 tokens left today" in admin.get(chat).text
    fake.reply(tokens=["one", " two", " three"])
    post(admin, f"{chat}/messages", message="Count")
    assert "1 of 2 messages left this minute · 1 of 5 tokens left today" in admin.get(chat).text  # 3 + the end
    fake.reply(tokens=["four", " five"])
    post(admin, f"{chat}/messages", message="More")
    refused = post(admin, f"{chat}/messages", message="And more")
    assert refused.status_code == 429
    assert (
        "Your account has used its 5 tokens for today, the most this chat allows. More from 00:00 UTC" in refused.text
    )
    assert ">And more</textarea>" in refused.text
    usage = admin.get("/admin/").text
    assert re.search(r'id="account-ada">.*?<td>2</td>\s*<td>5</td>', usage, re.S)  # the last cut to the 1 left


def test_header_sign_in_is_believed_only_from_the_trusted_proxy(make_app):
    app = make_app(AUTH="header", PROXY_COUNT=1, ALLOWED_HOSTS=("chat.example.org",))
    through_proxy = app.test_client()
    named = {"X-Forwarded-User": "ada", "X-Forwarded-For": "203.0.113.7", "Host": "chat.example.org"}
    page = through_proxy.get("/", headers=named, follow_redirects=True)
    assert "Signed in as <strong>ada</strong>" in page.text
    direct = app.test_client()
    direct.environ_base["REMOTE_ADDR"] = "198.51.100.1"  # reached the app without the proxy
    refused = direct.get("/", headers={**named, "X-Forwarded-For": "127.0.0.1"})
    assert refused.status_code == 401 and "did not come through it" in refused.text
    assert through_proxy.get("/", headers={"Host": "chat.example.org"}).status_code == 401  # the proxy named none


def admin_and_bob(server: GunicornApp) -> requests.Session:
    """Sign up the admin (ada) and bob on a running server, and approve bob; ada's browser session."""
    admin = requests.Session()
    for session, name in ((admin, "ada"), (requests.Session(), "bob")):
        form = session.get(server.url + "/sign-up").text
        session.post(server.url + "/sign-up", data={"csrf_token": csrf(form), "username": name, "password": PASSWORD})
    as_admin(admin, server, "bob", "approve")
    return admin


def as_admin(admin: requests.Session, server: GunicornApp, username: str, action: str) -> str:
    """Do one of the admin page's actions on an account; the page it answers with."""
    page = admin.get(server.url + "/admin/").text
    data = {"csrf_token": csrf(page), "action": action}
    return admin.post(server.url + f"/admin/accounts/{username}", data=data, timeout=10).text


def signed_in_browser(server: GunicornApp, username: str, password: str = PASSWORD) -> requests.Session:
    """A new browser session signed in as `username`."""
    browser = requests.Session()
    form = browser.get(server.url + "/sign-in").text
    browser.post(server.url + "/sign-in", data={"csrf_token": csrf(form), "username": username, "password": password})
    return browser


def test_a_disabled_accounts_open_socket_is_closed(tmp_path, fake):
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, AUTH="local")
    with GunicornApp(environment) as server:
        admin = admin_and_bob(server)
        user = signed_in_browser(server, "bob")
        chat = ChatClient(server.url, http=user)
        ws = chat.connect()
        fake.reply(tokens=["Hi"])
        assert "Hi" in chat.exchange("Hello", ws)[-1]
        admins_chat = ChatClient(server.url, http=admin)  # another account, even the admin, cannot follow bob's chat
        admins_chat.socket_url = chat.socket_url
        with pytest.raises(websocket.WebSocketBadStatusException, match="404"):
            admins_chat.connect()
        started = time.monotonic()
        as_admin(admin, server, "bob", "disable")
        notice = read_until(ws, [], "You were signed out", seconds=10)[-1]
        assert "by an admin" in notice and closed_with(ws) == 4003
        assert time.monotonic() - started < 5
        # a new connection: the session's pooled one may be the one gunicorn closes after its 2 s keep-alive
        page = requests.get(chat.page_url, cookies=user.cookies, allow_redirects=False, timeout=10)
        assert page.headers["Location"] == "/sign-in"


class TalkingSocket:
    """A chat socket whose every frame is read as it comes (in a thread), noting when the server closed it."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.frames: list[str] = []
        self.closed_at: float | None = None
        self.close_code: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code, self.closed_at = int.from_bytes(frame.data[:2], "big"), time.monotonic()
                self.ws.shutdown()
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.frames.append(frame.data.decode())

    def answers(self) -> int:
        return sum(1 for frame in self.frames if FINISHED.search(frame))

    def say(self, text: str) -> None:
        """Send a message, unless the server has closed the socket already."""
        if self.closed_at is None:
            with contextlib.suppress(websocket.WebSocketConnectionClosedException, BrokenPipeError):
                act(self.ws, "send", message=text)


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_a_socket_that_keeps_talking_is_closed_within_2_s_of_each_way_a_session_ends(tmp_path, fake, worker_class):
    """Disabled, its password reset, signed out everywhere, signed out: each closes the socket of a tab that sends
    a message every half second (so it is never quiet), within 2 s, and the model is asked nothing more."""
    environment = app_environment(
        tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, AUTH="local", WORKER_CLASS=worker_class
    )
    with GunicornApp(environment) as server:
        admin = admin_and_bob(server)
        password = PASSWORD

        def sign_out(path: str) -> None:
            page = user.get(chat.page_url).text
            user.post(server.url + path, data={"csrf_token": csrf(page)}, timeout=10)

        for ending in ("disable", "reset-password", "sign-out-everywhere", "sign-out"):
            user = signed_in_browser(server, "bob", password)
            chat = ChatClient(server.url, http=user)
            tab = TalkingSocket(chat.connect())
            for said in range(1, 4):  # answered while signed in
                tab.say(f"Message {said}")
                deadline = time.monotonic() + 10
                while tab.answers() < said and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert tab.answers() == said, tab.frames[-3:]
                time.sleep(0.5)
            asked = len(fake.requests)
            started = time.monotonic()
            if ending.startswith("sign-out"):  # in bob's browser, the tab's own session
                sign_out("/" + ending)
            elif ending == "reset-password":
                password = re.search(r"new password is (\S+) ", as_admin(admin, server, "bob", ending)).group(1)
            else:
                as_admin(admin, server, "bob", ending)
            while tab.closed_at is None and time.monotonic() - started < 5:
                tab.say("Still here")
                time.sleep(0.5)
            assert tab.close_code == 4003, (ending, tab.frames[-3:])
            assert tab.closed_at - started < 2, (ending, tab.closed_at - started)
            assert any("You were signed out" in frame for frame in tab.frames), ending
            time.sleep(1)  # nothing asked of the model after the account's session ended, nor while it closed
            assert len(fake.requests) == asked, (ending, len(fake.requests) - asked)
            if ending == "disable":
                as_admin(admin, server, "bob", "enable")


def test_an_account_picks_only_the_models_the_admin_allows(make_app, fake):
    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    app = make_app(MODELS=json.dumps(models))
    admin, bob = app.test_client(), app.test_client()
    sign_up(admin, "ada")
    sign_up(bob, "bob")
    post(admin, "/admin/accounts/bob", action="approve")
    assert "not a model this chat offers" in post(admin, "/admin/accounts/bob", action="models", models="GPT-9").text
    assert "bob may pick Router chat." in post(admin, "/admin/accounts/bob", action="models", models="Router chat").text
    sign_in(bob, "bob")
    chat = bob.get("/").location
    page = bob.get(chat).text
    assert '<span id="current-model">Router chat</span>' in page and "Gemma" not in page  # his one model alone
    assert 'list="model-options"' not in page  # one model: no picker in the box
    refused = post(bob, f"{chat}/messages", message="hi", model="Gemma")  # not his to pick: said, nothing sent
    assert "Your account may not use the model Gemma (the admin chose which it may): pick Router chat." in refused.text
    assert fake.requests == []
    fake.reply(tokens=["Hello", " bob"])
    post(bob, f"{chat}/messages", message="hi")
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert "99,988 of 100,000 tokens left today" in bob.get(chat).text  # the server's count: 10 prompt + 2
    admin_chat = admin.get("/").location
    post(admin, f"{admin_chat}/messages", message="hi", model="Gemma")  # ada may pick every model
    assert fake.requests[-1].path.startswith("/models/google/gemma-7b-it")


def test_the_sign_in_limit_counts_every_way_of_writing_a_name(make_app):
    """Found by a red-team pass: a name padded past 64 characters was counted apart from the account."""
    app = make_app()
    sign_up(app.test_client(), "kate")
    client = app.test_client()
    for _ in range(10):
        sign_in(client, "kate", "wrong password")
    assert sign_in(client, "  KATE \t").status_code == 429  # the same name, however it is written
    assert sign_in(client, "kate" + " " * 60 + "x").status_code == 401  # another name: never kate's account


def test_an_admins_change_during_a_sign_in_is_not_undone(make_app):
    """Found by a red-team pass: a sign-in wrote back the account it had read before the admin disabled it."""
    app = make_app()
    store = app.extensions["chat_store"]
    sign_up(app.test_client(), "ada")
    sign_up(app.test_client(), "bob")
    bob = accounts.load(store, "bob")
    bob.status = "active"
    accounts.save(store, bob)
    read_at_sign_in = accounts.check_password(store, "bob", PASSWORD)
    disabled = accounts.load(store, "bob")
    disabled.status = "disabled"
    accounts.save(store, disabled)  # the admin, while the password was being checked
    assert accounts.start_session(store, read_at_sign_in) is None
    assert accounts.load(store, "bob").status == "disabled" and accounts.load(store, "bob").sessions == {}
    disabled.status = "active"
    accounts.save(store, disabled)
    read_at_sign_in = accounts.check_password(store, "bob", PASSWORD)
    reset = accounts.load(store, "bob")
    accounts.set_password(reset, "a brand new password")
    accounts.save(store, reset)
    assert accounts.start_session(store, read_at_sign_in) is None  # the old password no longer signs in


def test_a_failed_sign_up_keeps_the_invitation_and_sign_ups_are_limited(make_app):
    app = make_app()
    admin = app.test_client()
    sign_up(admin, "ada")
    link = re.search(r"http://localhost(/join/\S+)<", post(admin, "/admin/invitations").text).group(1)
    assert sign_up(app.test_client(), "ada", path=link).status_code == 400  # taken
    assert sign_up(app.test_client(), "bob", "short", path=link).status_code == 400
    assert sign_up(app.test_client(), "bob", path=link).status_code == 302  # the link still works, once
    made = [sign_up(app.test_client(), f"someone{n}").status_code for n in range(8)]
    assert made == [202] * 6 + [429] * 2  # ten tries a quarter hour from one address, the four above included


def test_a_csrf_token_in_any_characters_is_refused_not_a_crash(make_app):
    client = make_app().test_client()
    client.get("/sign-in")
    assert client.post("/sign-in", data={"csrf_token": "é", "username": "a", "password": "b"}).status_code == 400


@pytest.fixture
def on_redis(make_app):
    """Makes the app with accounts on the test's own Redis database (it keeps nothing on disk, like Debian's
    default Redis), reachable from elsewhere; and a function that empties that Redis, as its restart does."""
    url = REDIS_ACCOUNTS_URL
    client = redis.Redis.from_url(url)
    client.flushdb()
    reachable = {"CHAT_STORE_URL": url, "REDIS_KEEPS_NOTHING": "accept", "CHAT_BIND": ("0.0.0.0:8000",)}
    yield lambda **settings: make_app(**reachable, **settings), client.flushdb
    client.flushdb()
    client.close()


def setup_code(log: str) -> str:
    """The last setup code the chat printed in its log."""
    return re.findall(r"the setup code (\S+) ", log)[-1]


def test_after_the_store_loses_its_data_a_stranger_does_not_become_the_admin(on_redis, caplog):
    """The issue's attack: ada signs up, Redis restarts empty, mallory signs up and was the admin."""
    make, empty_the_store = on_redis
    app = make()
    ada, mallory = app.test_client(), app.test_client()
    refused = sign_up(ada, "ada")  # reachable from elsewhere: the first account needs the code from the log
    assert refused.status_code == 403 and "setup code" in refused.text
    assert sign_up(ada, "ada", setup_code=setup_code(caplog.text)).status_code == 302
    assert ada.get("/admin/").status_code == 200
    used = setup_code(caplog.text)
    empty_the_store()
    for code in ("", used, "0000-0000-0000"):
        refused = sign_up(mallory, "mallory", setup_code=code)
        assert refused.status_code == 403
        assert "has no admin yet" in refused.text and "setup code printed in the chat's log" in refused.text
    assert mallory.get("/admin/").status_code != 200
    assert setup_code(caplog.text) != used  # a new one, printed for whoever runs the chat


def test_the_admins_are_the_names_in_admins_and_nobody_else_by_arriving_first(on_redis, caplog):
    make, empty_the_store = on_redis
    app = make(ADMINS=("ada",))
    mallory, ada = app.test_client(), app.test_client()
    assert sign_up(mallory, "mallory").status_code == 202  # the first to arrive waits for an admin
    assert sign_up(mallory, "ada").status_code == 403  # ada's name needs the setup code
    assert sign_up(ada, "ada", setup_code=setup_code(caplog.text)).status_code == 302
    assert ada.get("/admin/").status_code == 200
    empty_the_store()
    assert sign_up(mallory, "mallory").status_code == 202
    assert sign_in(mallory, "mallory").status_code != 302 and mallory.get("/admin/").status_code != 200


def test_a_name_in_admins_is_an_admin_when_it_signs_in_once_its_account_is_active(make_app):
    """A name signed up before it was put in ADMINS may be anyone's: while it waits for approval it is not made
    admin (a red-team pass took the admin page so); approved, or given to its owner by create-admin, it is."""
    app = make_app()
    ada = app.test_client()
    sign_up(ada, "ada")
    sign_up(app.test_client(), "bob", "a squatters password")  # waits for approval
    app = make_app(ADMINS=("bob",))  # the same store, now naming bob
    squatter = app.test_client()
    assert sign_in(squatter, "bob", "a squatters password").status_code == 401
    assert squatter.get("/admin/").status_code != 200
    ada = app.test_client()
    sign_in(ada, "ada")
    post(ada, "/admin/accounts/bob", action="approve")
    bob = app.test_client()
    assert sign_in(bob, "bob", "a squatters password").status_code == 302
    assert bob.get("/admin/").status_code == 200


def test_signing_in_to_an_account_that_waits_counts_as_a_wrong_password(make_app):
    """Otherwise the slower tries after ten failures told a taken name (someone else's, waiting or not: the
    prober's own password fails) from a new one (the prober's own, which waits for approval)."""
    app = make_app()
    sign_up(app.test_client(), "ada")
    prober = app.test_client()
    sign_up(prober, "newname", "the probers password")  # a new name: it waits for approval
    for _ in range(10):
        assert sign_in(prober, "newname", "the probers password").status_code == 401
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    started = time.monotonic()
    assert sign_in(elsewhere, "newname", "the probers password").status_code == 401
    assert time.monotonic() - started >= auth.SLOWER_SECONDS  # slowed as a taken name's tries are


def test_the_setup_code_is_printed_at_start_only_while_an_admin_may_sign_up_with_it(on_redis, caplog):
    make, _ = on_redis
    make()
    code = setup_code(caplog.text)
    assert "Sign up at /sign-up with the setup code" in caplog.text and "create-admin" in caplog.text
    caplog.clear()
    make()  # another worker, or a restart: the same code
    assert setup_code(caplog.text) == code
    sign_up(make().test_client(), "ada", setup_code=code)
    caplog.clear()
    make()
    assert "setup code" not in caplog.text


def test_on_this_machine_alone_the_first_account_is_the_admin_as_before(make_app, caplog):
    app = make_app()
    assert sign_up(app.test_client(), "ada").status_code == 302
    assert "setup code" not in caplog.text


def test_wrong_passwords_from_anywhere_never_lock_the_owner_out(make_app):
    """The issue's lockout: ten wrong passwords for victim from anywhere made victim's own fail for 15 minutes."""
    app = make_app()
    sign_up(app.test_client(), "victim")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.66"
    for _ in range(10):
        assert sign_in(attacker, "victim", "a wrong guess").status_code == 401
    assert sign_in(attacker, "victim").status_code == 429  # this address has had its tries at this account
    victim = app.test_client()
    victim.environ_base["REMOTE_ADDR"] = "198.51.100.5"  # a fresh address
    started = time.monotonic()
    assert sign_in(victim, "victim").status_code == 302
    slowed = time.monotonic() - started
    assert slowed >= auth.SLOWER_SECONDS  # the account under attack: each try waits, none is refused
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.6"
    assert sign_in(other, "victim", "another guess").status_code == 401


def test_sign_up_does_not_tell_which_names_are_taken_and_the_owner_is_told(make_app):
    """Names could be listed: "That username is taken". Now a taken name is answered as a new account is (it
    waits for an admin), and the name's owner is told at their next sign-in."""
    app = make_app()
    sign_up(app.test_client(), "ada")
    sign_up(app.test_client(), "bob")
    prober = app.test_client()
    taken, new = sign_up(prober, "bob", "the probers password"), sign_up(prober, "carol", "the probers password")
    assert taken.status_code == new.status_code == 202 and taken.text == new.text
    wrong = sign_in(prober, "nobody", "the probers password")
    for name in ("bob", "carol"):  # a waiting account and a taken name read alike at sign-in too
        refused = sign_in(prober, name, "the probers password")
        assert refused.status_code == 401 and refused.text.replace(name, "nobody") == wrong.text
    assert "once an admin has let it in" in wrong.text
    assert accounts.check_password(app.extensions["chat_store"], "bob", PASSWORD)  # bob's account is untouched
    admin = app.test_client()
    sign_in(admin, "ada")
    post(admin, "/admin/accounts/bob", action="approve")
    owner = app.test_client()
    sign_in(owner, "bob")
    told = owner.get("/", follow_redirects=True).text
    assert "Someone asked for a new account named bob" in told and "yours is unchanged" in told
    assert "Someone asked" not in owner.get("/", follow_redirects=True).text  # told once


def test_a_402_tells_each_reader_what_they_can_do_and_only_whoever_runs_the_chat_about_env(make_app, fake):
    credits = {"error": "You have exceeded your monthly included credits for Inference Providers."}
    app = make_app()
    admin, bob = app.test_client(), app.test_client()
    sign_up(admin, "ada")
    sign_up(bob, "bob")
    post(admin, "/admin/accounts/bob", action="approve")
    sign_in(bob, "bob")
    store = app.extensions["chat_store"]
    for reader in (admin, bob):
        chat = reader.get("/").location
        fake.reply(status=402, body=credits)
        post(reader, f"{chat}/messages", message="hi")
        page = reader.get(chat).text
        assert "has used up its credits" in page  # what happened: the same for everyone
        if reader is admin:
            assert "remove HF_API_TOKEN from .env" in page
        else:
            assert ".env" not in page
            assert "pick another model (a local one costs nothing), or ask the admin to add credits" in page
    bob_account = accounts.load(store, "bob")
    conversation = store.list_conversations(bob_account.owner)[0]
    tab = SocketTab(app, conversation, account=bob_account, session_id=next(iter(bob_account.sessions)))
    try:
        fake.reply(status=402, body=credits)
        finished = tab.act("send", message="again")
    finally:
        tab.close()
    assert "ask the admin to add credits" in finished and ".env" not in finished


def test_the_operator_of_a_chat_without_accounts_is_told_about_env(client, fake):
    chat = client.get("/").location
    fake.reply(status=402, body={"error": "insufficient credits"})
    post(client, f"{chat}/messages", message="hi")
    assert "remove HF_API_TOKEN from .env" in client.get(chat).text
