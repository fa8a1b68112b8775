"""Tokens grouped so that an answer's fragments go out at most once per flush interval."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator

from chatbot.services.protocols import Chunk, Text

_END = object()


def coalesced(tokens: Iterator[Chunk], flush_seconds: float, cancel: threading.Event) -> Iterator[list[Chunk]]:
    """Group tokens so that at most one group is yielded per `flush_seconds`.

    A reader thread pulls from the backend into `inbox`; this side sleeps until the next
    flush is due (it does not wake for every token), so a held-back token is sent on time
    even if the backend stalls, and the end of the stream is seen at once.
    """
    if cancel.is_set():  # stopped already (between two rounds of tool calls): the server is not asked
        return
    inbox: collections.deque = collections.deque()
    arrived, ended = threading.Event(), threading.Event()

    def read() -> None:
        try:
            for token in tokens:
                inbox.append(token)
                arrived.set()
                if cancel.is_set():
                    break
        except BaseException as error:  # handed over to the caller's thread
            inbox.append(error)
        inbox.append(_END)
        ended.set()
        arrived.set()

    threading.Thread(target=read, daemon=True, name="reply-reader").start()
    last_flush = 0.0
    while not cancel.is_set():
        if not arrived.wait(0.25):
            continue
        due = last_flush + flush_seconds - time.monotonic()
        if due > 0:
            ended.wait(due)  # sleep through the tokens that arrive meanwhile; the end wakes it
        arrived.clear()  # before draining: a token appended from now on sets it again
        batch: list[Chunk] = []
        while inbox:
            item = inbox.popleft()
            if item is _END or isinstance(item, BaseException):
                if batch:
                    yield batch
                if isinstance(item, BaseException):
                    raise item
                return
            batch.append(item)
        if batch:
            yield batch
            if any(isinstance(chunk, Text) for chunk in batch):  # the first text is never held back
                last_flush = time.monotonic()
