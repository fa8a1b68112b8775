"""The chat sockets open in this worker, held against its caps.

An open socket holds a thread of a gthread worker (a greenlet of a gevent one) for as long as it is open, so
the caps are per worker, where the threads are: all sockets together leave a reserve for pages and health
checks (SOCKETS_PER_WORKER, which gunicorn.conf.py sets from the worker's threads), and one browser session or
one network address may hold only so many of them (SOCKETS_PER_SESSION, SOCKETS_PER_ADDRESS).

The workers share one listening socket and the kernel hands each connection to one of them, not evenly: a
worker may be full while another has room. So a tab refused by a full worker tries again by itself, soon and
then less often (static/js/chat.js), and lands on whichever worker takes it then; the host holds every chat it
has threads for. A tab refused for its session's or address's cap does not: only closing tabs makes room.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from chatbot.chat.limits import address_key


class SocketRefusal(NamedTuple):
    """Why a socket may not open, in words for the user, and whether the tab should try again by itself."""

    text: str
    try_again: bool


class OpenSockets:
    """How many sockets are open, in all, per session and per address; `held` admits one or says why not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    @contextmanager
    def held(self, config: dict, owner: str, address: str | None) -> Iterator[SocketRefusal | None]:
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


def refusal(full: str, cap: int) -> SocketRefusal:
    """Why a socket may not open, and what happens or what to do, in words for the user."""
    if full == "all":
        return SocketRefusal(
            f"This part of the chat server holds as many open chats as it can ({cap}), so this tab could not "
            "connect yet. It tries again by itself in a few seconds, then less often; if it keeps happening, tell "
            "whoever runs the chat.",
            try_again=True,
        )
    who = "This browser has" if full.startswith("session:") else "Your network address has"
    return SocketRefusal(
        f"{who} {cap} chat tabs open on this server, the most it allows, so this one could not connect. Close some "
        "of them, then reload this page.",
        try_again=False,
    )
