"""A store that fails, for real: a full disk under the SQLite file, a Redis at its maxmemory, a Redis or a
PostgreSQL that dies while an answer is written. Each is told in plain words, /readyz says so, and nothing the user
typed is lost."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from chatbot.local_model.server import free_port
from chatbot.web import create_app
from config import ConfigError
from tests import postgres
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.servers import FINISHED, REDIS_URL, ROOT, ChatClient, GunicornApp, act, finished_answer, read_until

NOTICE = 'id="notice"'


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB file system of its own (tmpfs), for the conversations file; unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    assert done.returncode == 0, f"this test mounts a small tmpfs and needs root: {done.stderr.decode()}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Take every free byte of `disk`."""
    with open(disk / "filler", "wb", buffering=0) as filler:  # unbuffered: closing it has nothing left to write
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass


@contextlib.contextmanager
def running_redis(*options: str):
    """A Redis of this test's own on a free port, started with `options` (the shared one must not be filled,
    killed or reconfigured)."""
    port = free_port()
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed: `make test` installs it"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", *options], stdout=subprocess.DEVNULL
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the test's Redis did not start"
            time.sleep(0.05)
    try:
        yield port, process, client
    finally:
        client.close()
        process.kill()
        process.wait()


@pytest.fixture
def own_redis():
    """A Redis that keeps nothing on disk, as the test Redis."""
    with running_redis("--save", "", "--appendonly", "no") as running:
        yield running


def chat_on(tmp_path, fake, **settings: str) -> GunicornApp:
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, READ_TIMEOUT="5")
    return GunicornApp({**environment, **settings}, workers=1)


def test_a_full_disk_is_told_on_readyz_on_the_socket_and_in_a_form_post(tmp_path, fake, small_disk):
    with chat_on(tmp_path, fake, CHAT_STORE_URL=f"sqlite:///{small_disk}/chat.sqlite3") as server:
        chat = ChatClient(server.url)
        ws = chat.connect()
        fill(small_disk)

        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and "has 0 KB free, too little to save answers" in ready.json()["store"]

        act(ws, "send", message="Will this be saved? " * 900)  # pages beyond what the file has
        frames = read_until(ws, [], NOTICE, seconds=20)
        assert f"The disk that holds the conversations ({small_disk}) is full, so nothing can be saved" in frames[-1]
        assert "data-sent-now" not in "".join(frames)  # the message was not taken: it stays in the box

        posted = chat.post_form("/messages", message="By form " * 2000)  # the page is read first: reads work
        assert posted.status_code == 503
        assert "is full, so nothing can be saved" in posted.text and "it is still in the box" in posted.text

        (small_disk / "filler").unlink()
        fake.reply(tokens=["Saved", " now"])
        assert "Saved now" in chat.exchange("And now?", ws)[-1]
        ws.close()
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200


def test_a_full_redis_is_told_and_the_message_stays(tmp_path, fake, own_redis):
    port, _, client = own_redis
    with chat_on(tmp_path, fake, CHAT_STORE_URL=f"redis://127.0.0.1:{port}/0") as server:
        chat = ChatClient(server.url)
        ws = chat.connect()
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # below what it uses already: every write is refused (OOM)

        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert f"Redis at 127.0.0.1:{port}/0) is full (its maxmemory is reached)" in ready.json()["store"]

        act(ws, "send", message="Hello")
        frames = read_until(ws, [], NOTICE, seconds=20)
        assert "is full (its maxmemory is reached), so nothing can be saved" in frames[-1]
        assert "data-sent-now" not in "".join(frames)

        client.config_set("maxmemory", 0)
        fake.reply(tokens=["Room", " again"])
        assert "Room again" in chat.exchange("Hello", ws)[-1]
        ws.close()


def test_redis_dying_while_an_answer_is_written_is_told_with_what_arrived(tmp_path, fake, own_redis):
    port, process, _ = own_redis
    with chat_on(tmp_path, fake, CHAT_STORE_URL=f"redis://127.0.0.1:{port}/0") as server:
        chat = ChatClient(server.url)
        ws = chat.connect()
        fake.reply(tokens=[f"word{i} " for i in range(30)], delay=0.1)
        act(ws, "send", message="Tell me a long story")
        frames = read_until(ws, [], "word3", seconds=20)
        process.kill()
        read_until(ws, frames, FINISHED, seconds=30)
        ws.close()
        ended = finished_answer(frames)
        assert f"The chat&#39;s store (Redis at 127.0.0.1:{port}/0) does not answer" in ended
        assert "What arrived is shown above, but it could not be saved" in ended
        assert "word3" in ended  # what arrived stays on the page
        assert "failed to start the answer" not in "".join(frames)

        page = chat.http.get(chat.page_url, timeout=20)
        assert page.status_code == 503 and "does not answer" in page.text
        assert requests.get(server.url + "/readyz", timeout=10).json()["store"].startswith("The chat's store")


def test_postgresql_stopping_while_an_answer_is_written_is_told_with_what_arrived_and_the_chat_works_once_back(
    tmp_path, fake
):
    """A PostgreSQL of the test's own (the machine's is shared), stopped at once mid-answer, then started again."""
    with postgres.PrivateServer() as server, postgres.new_database("chat", server.url) as url:
        with chat_on(tmp_path, fake, CHAT_STORE_URL=url) as chat_server:
            chat = ChatClient(chat_server.url)
            ws = chat.connect()
            fake.reply(tokens=[f"word{i} " for i in range(30)], delay=0.1)
            act(ws, "send", message="Tell me a long story")
            frames = read_until(ws, [], "word5", seconds=20)
            saved_before_the_stop(chat, "word0")  # a save is due every 0.25 s; a slow machine may not have made one
            server.stop()
            read_until(ws, frames, FINISHED, seconds=8)  # told at once, not after a wait for connections per call
            ws.close()
            ended = finished_answer(frames)
            where = f"PostgreSQL at 127.0.0.1:{server.port}/chat"
            assert f"The chat&#39;s store ({where}) does not answer" in ended
            assert "What arrived is shown above, but it could not be saved" in ended
            assert "word5" in ended  # what arrived stays on the page
            page = chat.http.get(chat.page_url, timeout=20)
            assert page.status_code == 503 and "does not answer" in page.text
            assert requests.get(chat_server.url + "/readyz", timeout=10).json()["store"].startswith("The chat's store")

            server.start()
            assert requests.get(chat_server.url + "/readyz", timeout=10).status_code == 200
            assert "word0" in chat.page()  # what was saved before it stopped is kept
            fake.reply(tokens=["Back", " again"])
            assert "Back again" in ChatClient(chat_server.url).exchange("Are you back?")[-1]


def saved_before_the_stop(chat: ChatClient, words: str, seconds: float = 10) -> None:
    """Wait until the page, read from the store, shows `words` of the answer being written."""
    deadline = time.monotonic() + seconds
    while words not in chat.page():
        assert time.monotonic() < deadline, f"{words!r} was not saved within {seconds} s"
        time.sleep(0.05)


def test_a_redis_that_keeps_nothing_on_disk_stops_start_up_with_one_line(tmp_path):
    """The test Redis keeps nothing (appendonly no, save ""): a restart would empty every account and chat."""
    url = REDIS_URL  # this checkout's own database, which keeps nothing
    with pytest.raises(ConfigError, match=r"keeps nothing on disk.*appendonly yes.*REDIS_KEEPS_NOTHING=accept"):
        create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": url})
    assert create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": url, "REDIS_KEEPS_NOTHING": "accept"})
    line = refused_start({**app_environment(tmp_path), "CHAT_STORE_URL": url, "REDIS_KEEPS_NOTHING": ""})
    assert f"Redis at 127.0.0.1:6379/{url.rsplit('/', 1)[1]} keeps nothing on disk" in line
    assert "appendonly yes" in line


def refused_start(environment: dict[str, str]) -> str:
    """gunicorn with `environment` stops at once (exit code 4): the line that says why."""
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "wsgi:app"]
    started = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert started.returncode == 4
    [line] = [line for line in started.stderr.splitlines() if "Cannot start the chat" in line][:1]
    return line


def test_the_memory_store_stops_start_up_with_one_line_unless_the_chat_runs_one_worker(tmp_path):
    """Each worker would keep chats of its own, and a page served by another would not find them."""
    environment = {**app_environment(tmp_path), "CHAT_STORE_URL": "memory://"}
    line = refused_start({**environment, "WEB_CONCURRENCY": "2"})
    assert "CHAT_STORE_URL=memory:// keeps the chats in one process, and gunicorn starts 2 workers" in line
    assert "WEB_CONCURRENCY=1" in line
    with GunicornApp(environment, workers=1) as server:
        chat = ChatClient(server.url)
        assert chat.http.get(chat.page_url, timeout=10).status_code == 200  # the chat it made is there


@pytest.mark.parametrize("keeping", [("--appendonly", "yes"), ("--save", "3600 1", "--appendonly", "no")])
def test_a_redis_that_keeps_its_data_starts_the_chat(tmp_path, keeping):
    with running_redis("--dir", str(tmp_path), *keeping) as (port, _, _client):
        assert create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"redis://127.0.0.1:{port}/0"})


def test_a_redis_that_refuses_config_is_said_unchecked_and_the_chat_starts(tmp_path, caplog):
    """Managed Redis (ElastiCache, Memorystore) refuses CONFIG: the chat cannot tell, says so and starts."""
    with running_redis("--save", "", "--appendonly", "no", "--rename-command", "CONFIG", '""') as (port, _, client):
        with pytest.raises(redis.ResponseError):
            client.config_get("appendonly")
        app = create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"redis://127.0.0.1:{port}/0"})
    assert app
    assert f"Could not check whether Redis at 127.0.0.1:{port}/0 keeps its data on disk" in caplog.text
    assert "appendonly yes" in caplog.text
