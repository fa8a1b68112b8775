"""Open chat sockets cannot starve a server: caps per worker (a reserve stays for pages and health checks), per
session and per address, and a socket left alone is closed (the page connects again when the person is back)."""

import re
import time

import pytest
import requests
import websocket

from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import closed_with
from tests.servers import FINISHED, ChatClient, GunicornApp, read_until


@pytest.fixture
def small_server(tmp_path, fake):
    """One gthread worker with 12 threads, 8 of them kept for pages: room for 4 open chats."""

    def start(**settings):
        environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, GUNICORN_THREADS="12")
        return GunicornApp({**environment, **settings}, workers=1)

    return start


def refused_with(ws: websocket.WebSocket) -> tuple[str, int]:
    """The notice a refused socket gets, and the code it is closed with."""
    notice = ws.recv()
    return notice, closed_with(ws)


def test_idle_sockets_leave_the_reserve_for_pages_and_health_checks(small_server):
    """The attack that stopped the server: open sockets that say nothing, from many sessions."""
    with small_server() as server:
        chats = [ChatClient(server.url) for _ in range(12)]
        held = [chat.connect() for chat in chats[:4]]
        refused = [refused_with(chat.connect()) for chat in chats[4:]]
        for notice, code in refused:
            assert code == 4002  # chat.js tries again by itself on this code
            assert "This part of the chat server holds as many open chats as it can (4)" in notice
            assert "It tries again by itself in a few seconds" in notice
        started = time.monotonic()
        for _ in range(10):
            assert requests.get(server.url + "/healthz", timeout=5).ok
            assert requests.get(chats[0].page_url, cookies=chats[0].http.cookies, timeout=5).ok
        assert time.monotonic() - started < 5
        held.pop().close()
        time.sleep(0.5)
        held.append(chats[4].connect(again=True))  # a place came free: the tab tried again
        cleared = held[-1].recv()  # the refusal the tab shows is over
        assert 'id="notice"' in cleared and re.search(r'<div id="notice"[^>]*></div>', cleared)
        assert FINISHED.search(chats[4].exchange("Hello", held[-1])[-1]).group(2) == "done"
        for ws in held:
            ws.close()


def test_one_session_and_one_address_may_hold_only_so_many(small_server):
    with small_server(GUNICORN_THREADS="40", SOCKETS_PER_SESSION="2", SOCKETS_PER_ADDRESS="3") as server:
        chat = ChatClient(server.url)
        tabs = [chat.connect(), chat.connect()]
        notice, code = refused_with(chat.connect())
        assert code == 4001
        assert "This browser has 2 chat tabs open on this server, the most it allows" in notice
        assert "Close some of them, then reload this page." in notice
        tabs.append(ChatClient(server.url).connect())  # another session at the same address: its third
        notice, _ = refused_with(ChatClient(server.url).connect())
        assert "Your network address has 3 chat tabs open on this server" in notice
        for ws in tabs:
            ws.close()


def test_a_socket_left_alone_is_closed_but_not_while_it_streams(small_server, fake):
    with small_server(SOCKET_IDLE_MINUTES="0.02") as server:  # 1.2 s
        chat = ChatClient(server.url)
        ws = chat.connect()
        fake.reply(tokens=[f"w{i} " for i in range(10)], delay=0.3)  # 3 s of answer: longer than the idle time
        frames = chat.exchange("Take your time", ws)
        assert FINISHED.search(frames[-1]).group(2) == "done"
        notice = read_until(ws, [], "left alone", seconds=5)[-1]
        assert "This tab was left alone for 0.02 minutes, so its connection was closed" in notice
        assert closed_with(ws) == 4000


def test_a_tab_refused_by_a_full_worker_is_held_by_trying_again_while_the_host_has_room(tmp_path, fake):
    """Two workers of 4 places each; the kernel hands connections to either, not evenly. Tabs that try again on
    4002, as chat.js does, all get a place while the host has one: 8 chats held, none refused for good."""
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, GUNICORN_THREADS="12")
    with GunicornApp(environment, workers=2) as server:
        chats = [ChatClient(server.url) for _ in range(8)]
        held, full_refusals = [], 0
        for chat in chats:
            for _ in range(100):
                ws = chat.connect(again=True)
                first = ws.recv()  # the cleared notice of a tab let in, or a refusal
                if "could not connect" not in first:
                    held.append(ws)
                    break
                assert closed_with(ws) == 4002, first
                full_refusals += 1
                time.sleep(0.05)
        assert len(held) == 8, f"{len(held)} held after {full_refusals} refusals by a full worker"
        notice, code = refused_with(ChatClient(server.url).connect())  # the host is full now: told, and it tries again
        assert code == 4002 and "tries again by itself" in notice
        fake.reply(tokens=["Still", " here"])
        assert "Still here" in chats[0].exchange("Are you there?", held[0])[-1]
        for ws in held:
            ws.close()
