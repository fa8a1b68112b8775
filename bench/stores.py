"""An empty store of each kind for a benchmark, by name, removed afterwards.

PostgreSQL: a database of its own on 127.0.0.1:5432 (BENCH_PG_DB, default chatbot_bench), made and dropped.
Redis: database BENCH_REDIS_DB (default 14) of 127.0.0.1:6379, emptied before and after.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import redis

from tests import postgres

KINDS = ("sqlite", "postgres", "redis", "memory")


@contextlib.contextmanager
def store_url(kind: str) -> Iterator[str]:
    """The CHAT_STORE_URL of an empty store of that kind, for the block."""
    if kind == "postgres":
        with postgres.new_database(os.environ.get("BENCH_PG_DB", "chatbot_bench")) as url:
            yield url
    elif kind == "redis":
        url = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '14')}"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
            try:
                yield url
            finally:
                client.flushdb()
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
    else:
        yield "memory://"
