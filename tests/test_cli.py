"""`make run`'s command: with no token and no API_URL it serves the chat on the embedded model."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from chatbot.local_model.server import free_port
from tests.conftest import app_environment
from tests.helpers import post, sign_in, sign_up
from tests.servers import FINISHED, ROOT, ChatClient


def wait_for(url, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the serve command exited early"
        try:
            return requests.get(url, timeout=1)
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a busy machine's slow start
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def children(pid: int, name: str) -> list[int]:
    """The processes called `name` that `pid` started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if fields[0].endswith(f"({name}") and int(fields[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_until_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while requests.get(url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"{url} did not become ready"
        time.sleep(0.2)


def test_serve_starts_the_local_model_restarts_it_and_ctrl_c_stops_both(tmp_path):
    port = free_port()
    environment = {**os.environ, **app_environment(tmp_path, MAX_NEW_TOKENS="20")}
    for unset in ("API_URL", "HF_API_TOKEN", "HF_TOKEN"):
        environment.pop(unset)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/static/favicon.svg", process)
        chat = ChatClient(f"http://127.0.0.1:{port}")
        assert "smollm2-135m-instruct" in chat.page()
        frames = chat.exchange("Hello")
        assert FINISHED.search(frames[-1]).group(2) == "done"
        [model] = children(process.pid, "llama-server")
        os.kill(model, signal.SIGKILL)  # as the OOM killer would
        wait_until_ready(chat.base_url)
        assert children(process.pid, "llama-server") != [model]
        frames = chat.exchange("Hello again")
        assert FINISHED.search(frames[-1]).group(2) == "done"
    finally:
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=30)
    assert "The built-in model exited unexpectedly (signal 9, SIGKILL)" in errors
    assert "Its last lines (" in errors and "  | " in errors  # the model's own output, in the app's log
    assert "The built-in model is answering again" in errors
    model_url = re.search(r"Local model ready at (\S+)", output).group(1)
    assert process.returncode is not None
    for url in (model_url + "/models", f"http://127.0.0.1:{port}/"):
        try:
            requests.get(url, timeout=1)
            raise AssertionError(f"{url} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass


def test_create_admin_makes_an_admin_from_the_servers_shell(make_app):
    app = make_app(CHAT_BIND=("0.0.0.0:8000",))  # reachable: nobody becomes the admin by signing up first
    runner = app.test_cli_runner()
    made = runner.invoke(args=["create-admin", "Ada"], input="correct horse battery\ncorrect horse battery\n")
    assert made.exit_code == 0, made.output
    assert "ada is an admin: sign in as ada with the password you typed" in made.output
    assert "correct horse battery" not in made.output  # asked for hidden, never shown
    client = app.test_client()
    assert sign_in(client, "ada").status_code == 302 and client.get("/admin/").status_code == 200

    short = runner.invoke(args=["create-admin", "bob"], input="short\nshort\n")
    assert short.exit_code == 1 and "A password has 10 to 1024 characters" in short.output
    sign_up(app.test_client(), "bob", "a squatters password")  # waits for approval: anyone may have made it
    promoted = runner.invoke(args=["create-admin", "bob"], input="bobs own password\nbobs own password\n")
    assert promoted.exit_code == 0 and "the old one no longer works" in promoted.output
    assert sign_in(app.test_client(), "bob", "a squatters password").status_code == 401
    bob = app.test_client()
    assert sign_in(bob, "bob", "bobs own password").status_code == 302 and bob.get("/admin/").status_code == 200
    sign_up(app.test_client(), "carol")
    post(client, "/admin/accounts/carol", action="approve")  # active: its owner is known, and keeps the password
    promoted = runner.invoke(args=["create-admin", "carol"])
    assert promoted.exit_code == 0 and "carol is an admin now (its password is unchanged)" in promoted.output


def test_create_admin_names_whom_a_proxy_signs_in_and_says_when_there_are_no_accounts(make_app):
    app = make_app(AUTH="header")
    made = app.test_cli_runner().invoke(args=["create-admin", "ops@example.org"])
    assert made.exit_code == 0 and "ops@example.org is an admin: they sign in as usual" in made.output
    open_chat = make_app(AUTH="none").test_cli_runner().invoke(args=["create-admin", "ada"])
    assert open_chat.exit_code == 1 and "AUTH=none has no accounts" in open_chat.output
