"""What this process remembers of other servers (what they say of themselves, their catalogues, when to come
back, whether they answer): one kind of mapping for all of it, and `forget_all()` to empty every one at once,
after a change of settings and between tests."""

from __future__ import annotations

import threading
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

_every: list[Remembered] = []  # each made once, at import: what forget_all() empties


class Remembered(dict[K, V]):
    """A mapping this process keeps; `lock` guards what reads and then writes it in several steps."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        super().__init__()
        self.lock = lock or threading.Lock()  # mappings that change together share one
        _every.append(self)


def forget_all() -> None:
    """Ask every server again: whatever was remembered of them is gone."""
    for remembered in _every:
        with remembered.lock:
            remembered.clear()
