"""A WebSocket in memory, as simple_websocket's server side is used by the chat socket: what the browser sends is
queued for `receive`, what the server sends is kept in `sent`, and `close` ends it; and a tab on a chat socket
served on one in this process."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from typing import Any

from flask import Flask
from simple_websocket import ConnectionClosed

from chatbot.stores.conversations import Conversation
from chatbot.web.socket.connection import ChatSocket
from tests.servers import FINISHED

SAID = re.compile(r'<div id="notice" class="notice" role="status" hx-swap-oob="true">(?P<words>[^<]+)</div>')


class FakeWebSocket:
    def __init__(self) -> None:
        self.inbox: queue.Queue[str | None] = queue.Queue()  # None: the browser went away
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.changed = threading.Condition()

    def receive(self, timeout: float | None = None) -> str | None:
        """The browser's next message; None after `timeout` seconds without one."""
        if self.closed:
            raise ConnectionClosed(self.closed[0], self.closed[1])
        try:
            raw = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if raw is None:
            self.close(1001, "going away")
            raise ConnectionClosed(1001, "going away")
        return raw

    def send(self, data: str) -> None:
        if self.closed:
            raise ConnectionClosed(self.closed[0], self.closed[1])
        with self.changed:
            self.sent.append(data)
            self.changed.notify_all()

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        with self.changed:
            self.closed = self.closed or (reason or 1000, message or "")
            self.changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern, after: int = 0, seconds: float = 20) -> str:
        """The first fragment sent (from the `after`th on) that holds `pattern`; AssertionError after `seconds`."""
        found = re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                for fragment in self.sent[after:]:
                    if found.search(fragment):
                        return fragment
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing sent holds {pattern!r} in {seconds:g} s; the last: {self.sent[-3:]}")
                self.changed.wait(left)


class SocketTab:
    """A tab on a chat socket of the app in this process (`ChatSocket` on a `FakeWebSocket`): no gunicorn."""

    def __init__(self, app: Flask, conversation: Conversation, **signed_in: Any) -> None:
        self.ws = FakeWebSocket()
        self.socket = ChatSocket(self.ws, app, conversation, "127.0.0.1", **signed_in)
        self.thread = threading.Thread(target=self.serve, args=(app,), daemon=True)
        self.thread.start()

    def serve(self, app: Flask) -> None:
        with app.app_context(), contextlib.suppress(ConnectionClosed):  # the browser went away
            self.socket.serve()

    def send(self, action: str, **fields: str) -> int:
        """Send `action`; how many fragments were sent before it."""
        before = len(self.ws.sent)
        self.ws.inbox.put(json.dumps({"action": action, **fields}))
        return before

    def act(self, action: str, **fields: str) -> str:
        """Do `action`; the fragment that ends it: a finished answer, a notice that says why not, or (a switch)
        the branch shown."""
        before = self.send(action, **fields)
        ended = re.compile('id="notice"' if action == "switch" else f"{FINISHED.pattern}|{SAID.pattern}")
        return self.ws.wait_for(ended, after=before)

    def close(self) -> None:
        self.ws.inbox.put(None)
        self.thread.join(5)
