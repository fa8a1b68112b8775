"""At most N of something per person at once, on every worker and host: each one holds a slot, a record of the
store made once (`Records.create_record`) under one of the person's N numbered keys, so two taking a slot at the
same instant never take the same one. A slot whose holder went away (a crashed writer: the caller says when a
record is no longer held) is taken over: its record is deleted only while it is still the one read
(`Records.delete_record_if_unchanged`), so of many taking it over at once, one makes it again and holds it; a
record deleted blindly could be the one another taker had just made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatbot.stores.conversations import Records


def claim(
    store: Records, kind: str, who: str, count: int, data: dict[str, Any], free: Callable[[dict], bool]
) -> str | None:
    """One of `who`'s `count` slots of `kind`, made with `data` (its record's key), or None when all are held; a
    slot whose record `free` says nobody holds any more is taken over."""
    for slot in range(count):
        key = f"{who} {slot}"
        if store.create_record(kind, key, data):
            return key
        held = store.load_record(kind, key)
        if held is None or free(held):
            if held is not None:
                store.delete_record_if_unchanged(kind, key, held)
            if store.create_record(kind, key, data):
                return key
    return None
