"""Pick the store that CHAT_STORE_URL names."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeGuard

from chatbot.stores.conversations import Store
from chatbot.stores.failures import StoreUnavailable
from config import ConfigError

MEMORY = "memory://"  # this process's memory: tests and throwaway chats
POSTGRES = ("postgresql://", "postgres://")  # a team's database: libpq's URL, as psql takes it


def open_store(url: str | None, instance_path: str, idle_seconds: float = 30 * 86400) -> Store:
    """The store for `url`; with none, a SQLite file in the instance folder. Conversations idle for
    `idle_seconds` are forgotten."""
    if not url:
        url = "sqlite:///" + os.path.join(instance_path, "chat.sqlite3")
    if url.startswith("sqlite:///"):
        from chatbot.stores.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), idle_seconds)
    if is_redis(url):
        from chatbot.stores.redis import RedisStore

        return RedisStore(url, idle_seconds=idle_seconds)
    if url.startswith(POSTGRES):
        from chatbot.stores.postgres import PostgresStore

        return PostgresStore(url, idle_seconds)
    if url == MEMORY:
        from chatbot.stores.memory import MemoryStore

        return MemoryStore(idle_seconds)
    raise ValueError(f"CHAT_STORE_URL={url!r}: this store is not supported yet")


def is_redis(url: str | None) -> TypeGuard[str]:
    return url is not None and url.startswith(("redis://", "rediss://", "unix://"))


def check_one_process(url: str | None, workers: int) -> None:
    """Refuse (ConfigError) the memory store for more than one worker: each would keep chats of its own, and a
    page served by another worker would not find them."""
    if url == MEMORY and workers > 1:
        raise ConfigError(
            f"CHAT_STORE_URL={MEMORY} keeps the chats in one process, and gunicorn starts {workers} workers: set "
            "WEB_CONCURRENCY=1, or leave CHAT_STORE_URL empty to keep them in a SQLite file."
        )


def check_it_keeps_data(url: str | None, accept_nothing: bool, warn: Callable[[str], None]) -> None:
    """Refuse (ConfigError) a Redis store that keeps nothing on disk, unless accepted: its restart would empty
    every account, so the next stranger to sign up would find no admin. Where it will not say, or does not
    answer, warn and go on. A SQLite store is a file: nothing to ask."""
    if not is_redis(url):
        return
    from chatbot.stores.redis import RedisStore

    store = RedisStore(url)
    fix = "set `appendonly yes` in its redis.conf (or CONFIG SET appendonly yes, then CONFIG REWRITE)"
    try:
        kept = store.keeps_data()
    except StoreUnavailable as error:
        warn(f"Could not check whether the chat's store keeps its data on disk: {error}")
        return
    finally:
        store.db.close()
    if kept is None:
        warn(
            f"Could not check whether Redis at {store.address} keeps its data on disk (it refuses CONFIG, as managed "
            f"Redis does): make sure it does ({fix}), or a restart of Redis loses every account and chat."
        )
    elif not kept and not accept_nothing:
        raise ConfigError(
            f"Redis at {store.address} keeps nothing on disk (appendonly no, no save), so a restart of Redis would "
            f"lose every account and chat: {fix}, or set REDIS_KEEPS_NOTHING=accept for a chat you can lose."
        )
