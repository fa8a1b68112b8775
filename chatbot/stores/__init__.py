"""Pick the store that CHAT_STORE_URL names."""

from __future__ import annotations

import os

from chatbot.conversations import Store


def open_store(url: str | None, instance_path: str, idle_seconds: float = 30 * 86400) -> Store:
    """The store for `url`; with none, a SQLite file in the instance folder. Conversations idle for
    `idle_seconds` are forgotten."""
    if not url:
        url = "sqlite:///" + os.path.join(instance_path, "chat.sqlite3")
    if url.startswith("sqlite:///"):
        from chatbot.stores.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), idle_seconds)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from chatbot.stores.redis import RedisStore

        return RedisStore(url, idle_seconds=idle_seconds)
    raise ValueError(f"CHAT_STORE_URL={url!r}: this store is not supported yet")
