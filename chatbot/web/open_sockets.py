"""The chat sockets open in this worker, held against its caps.

An open socket holds a thread of a gthread worker (a greenlet of a gevent one) for as long as it is open, so
the caps are per worker, where the threads are: all sockets together leave a reserve for pages and health
checks (SOCKETS_PER_WORKER, which gunicorn.conf.py sets from the worker's threads), and one browser session or
one network address may hold only so many of them (SOCKETS_PER_SESSION, SOCKETS_PER_ADDRESS).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from chatbot.chat.limits import address_key


class OpenSockets:
    """How many sockets are open, in all, per session and per address; `held` admits one or says why not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    @contextmanager
    def held(self, config: dict, owner: str, address: str | None) -> Iterator[str | None]:
        """Hold a place for one socket while the block runs; yields None, or why it may not open (then it holds
        nothing)."""
        keys = ("all", f"session:{owner}", f"address:{address_key(address)}")
        caps = (config["SOCKETS_PER_WORKER"], config["SOCKETS_PER_SESSION"], config["SOCKETS_PER_ADDRESS"])
        with self._lock:
            full = next((key for key, cap in zip(keys, caps, strict=True) if cap and self._counts[key] >= cap), None)
            if full is None:
                self._counts.update(keys)
        if full is not None:
            yield refusal(full, caps[keys.index(full)])
            return
        try:
            yield None
        finally:
            with self._lock:
                self._counts.subtract(keys)
                for key in keys:
                    if self._counts[key] <= 0:
                        del self._counts[key]


def refusal(full: str, cap: int) -> str:
    """Why a socket may not open, and what to do, in words for the user."""
    if full == "all":
        return (
            f"This chat server has as many chats open as it can hold ({cap} per worker), so this tab could not "
            "connect. Reload the page in a minute; if it keeps happening, tell whoever runs the chat."
        )
    who = "This browser has" if full.startswith("session:") else "Your network address has"
    return (
        f"{who} {cap} chat tabs open on this server, the most it allows, so this one could not connect. Close some "
        "of them, then reload this page."
    )
