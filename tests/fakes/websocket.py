"""A WebSocket in memory, as simple_websocket's server side is used by the chat socket: what the browser sends is
queued for `receive`, what the server sends is kept in `sent`, and `close` ends it."""

from __future__ import annotations

import queue
import re
import threading
import time

from simple_websocket import ConnectionClosed


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

    def close(self, reason: int = 1000, message: str = "") -> None:
        with self.changed:
            self.closed = self.closed or (reason, message)
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
