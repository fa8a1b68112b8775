"""The store for a team: conversations in the PostgreSQL database it already runs and backs up, shared by every
worker on every host.

The tables are SQLite's (chatbot/stores/postgres_schema.py brings them up to date at start-up), and so are most
queries (chatbot/stores/sql.py, their `?` made psycopg's `%s` here); this file keeps what PostgreSQL does its own
way. An answer being written grows by rows in `answer_parts`, one INSERT each, so saving it costs the same however
long it is; one answer at a time holds because starting one locks its conversation's row. Each call takes a
connection from a pool (psycopg_pool) for its round trips only, checked on the way out of the pool unless it worked
in the last second, so after PostgreSQL restarts the next call reconnects instead of failing on a connection that
died. A pool waits for a connection it cannot make; so that a PostgreSQL that is down is told at once, not after
WAIT_SECONDS per call, a call that gets none within a moment asks PostgreSQL for a connection of its own (one such
probe a second per process).

PostgreSQL's text cannot hold the character NUL (U+0000): in text it keeps, a NUL becomes U+FFFD, as a lone
surrogate does where text enters; JSON keeps it escaped.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool
from psycopg import errors

from chatbot.stores.conversations import Conversation, Message
from chatbot.stores.failures import StoreUnavailable, translating
from chatbot.stores.postgres_schema import NewerDatabase, migrate
from chatbot.stores.sql import MESSAGE_COLUMNS, SQLStore, with_parts

MAX_CONNECTIONS = 10  # per process: a call holds one for its round trips; PostgreSQL allows 100 in all by default
WAIT_SECONDS = 5.0  # for a free connection, or a new one; then the call fails, saying the store does not answer
MOMENT = 0.5  # waited for a pooled connection before asking whether PostgreSQL answers at all
PROBE_SECONDS = 1.0  # how long the answer to that question holds, for every call of the process
JUST_USED = 1.0  # a connection returned to the pool this recently is handed out again unchecked
WITH_PARTS = (  # a message and, while it is written, its parts from the one character %(start)s falls in, one row
    "SELECT {columns}, parts.first, parts.text, parts.saved_at FROM messages m LEFT JOIN LATERAL ("
    "SELECT min(p.start) AS first, string_agg(p.text, '' ORDER BY p.start) AS text,"
    " (array_agg(p.saved_at ORDER BY p.start DESC))[1] AS saved_at FROM answer_parts p"
    " WHERE m.status = 'streaming' AND p.message_id = m.id AND p.start >= coalesce((SELECT max(q.start)"
    " FROM answer_parts q WHERE q.message_id = m.id AND q.start <= greatest(%(start)s, length(m.content))), 0)"
    ") parts ON true "
).format(columns=", ".join("m." + column for column in MESSAGE_COLUMNS.split(", ")))
APPEND_TO_ANSWER = (  # one round trip: the part, unless its message is gone (then stop), and whether to stop
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)), saved AS (INSERT INTO answer_parts"
    " (message_id, start, text, saved_at) SELECT %(id)s, %(start)s, %(text)s, %(saved_at)s WHERE EXISTS"
    " (SELECT 1 FROM messages WHERE id = %(id)s) RETURNING 1) SELECT (SELECT count(*) FROM relaxed) = 1 AND"
    " (NOT EXISTS (SELECT 1 FROM saved) OR EXISTS (SELECT 1 FROM stop_requests WHERE message_id = %(id)s))"
)  # a part's commit does not wait for the disk: a crash of PostgreSQL loses at most its last fraction of a second
# of parts, as if it had crashed that much sooner; the whole answer, saved when it ends, waits as every write does


def explain(store: PostgresStore, error: BaseException) -> str:
    """What a failure of PostgreSQL means for the user, and what the server's owner can do."""
    where = f"PostgreSQL at {store.address}"
    if isinstance(error, errors.DiskFull | errors.OutOfMemory):
        return (
            f"The chat's store ({where}) is full, so nothing can be saved. Whoever runs the chat must free space on "
            "the database's disk; then send again."
        )
    if isinstance(error, errors.ReadOnlySqlTransaction):
        return f"The chat's store ({where}) is read-only (a standby): CHAT_STORE_URL must point at the primary."
    if isinstance(error, NewerDatabase):
        return f"The chat's store ({where}) cannot be used: {error}"
    if isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return (
            f"The chat's store ({where}) does not answer, so nothing can be read or saved. Whoever runs the chat "
            "must check that PostgreSQL is running and that CHAT_STORE_URL points at it; then try again."
        )
    return f"The chat's store ({where}) refused: {error}. Try again; if it keeps failing, the server log says why."


@translating((psycopg.Error, NewerDatabase), explain)
class PostgresStore(SQLStore):
    """Conversations in PostgreSQL; every worker on every host sees the same ones."""

    LIKE = "ILIKE"  # LIKE is case-sensitive here
    BYTES = "octet_length({})"
    LOCK = " FOR UPDATE"  # the conversation's row, locked until the transaction ends: another start waits for it

    def __init__(self, url: str, idle_seconds: float = 30 * 86400) -> None:
        self.url = url
        self.idle_seconds = idle_seconds
        where = psycopg.conninfo.conninfo_to_dict(url)  # never the password: the address is shown to users
        self.address = f"{where.get('host') or 'localhost'}:{where.get('port') or 5432}/{where.get('dbname', '')}"
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=int(WAIT_SECONDS)) as db:
                migrate(db)
        except (psycopg.Error, NewerDatabase) as error:  # start-up says why in the same words as any call
            raise StoreUnavailable(explain(self, error)) from error
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=MAX_CONNECTIONS,
            timeout=WAIT_SECONDS,
            kwargs={"autocommit": True, "connect_timeout": int(WAIT_SECONDS)},
            check=self._check_unless_just_used,
            reconnect_timeout=WAIT_SECONDS,  # then start again from a short delay: back within seconds of PostgreSQL
            name=f"chat store {self.address}",
            open=True,
        )

        self._returned: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()
        self._probing = threading.Lock()
        self._probed_at = -PROBE_SECONDS
        self._refused: str | None = None  # why the last probe failed, None when it connected

    def close(self) -> None:
        """Close every connection (the store is not used after)."""
        self.pool.close()

    @contextmanager
    def _connection(self) -> Iterator[Statements]:
        with self._pooled() as db:
            yield Statements(db)

    @contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection]:
        """A connection of the pool for one call; none within a moment, and PostgreSQL refusing one of its own, the
        call fails now (OperationalError); when PostgreSQL answers, the pool is busy: it waits on for one."""
        try:
            db = self.pool.getconn(timeout=MOMENT)
        except psycopg_pool.PoolTimeout:
            self._check_it_answers()
            db = self.pool.getconn(timeout=WAIT_SECONDS - MOMENT)
        try:
            yield db
        finally:
            self._returned[db] = time.monotonic()
            self.pool.putconn(db)  # rolled back if a transaction was left open, replaced if broken

    def _check_unless_just_used(self, db: psycopg.Connection) -> None:
        """The pool's check of a connection it hands out: one that worked less than JUST_USED seconds ago is taken
        as working (a round trip saved on each call of a busy chat); an older one is asked, and replaced if dead."""
        if time.monotonic() - self._returned.get(db, -JUST_USED) >= JUST_USED:
            psycopg_pool.ConnectionPool.check_connection(db)

    def _check_it_answers(self) -> None:
        with self._probing:  # the calls waiting meanwhile take its answer
            if time.monotonic() - self._probed_at >= PROBE_SECONDS:
                try:
                    psycopg.connect(self.url, connect_timeout=int(WAIT_SECONDS)).close()
                    self._refused = None
                except psycopg.OperationalError as error:
                    self._refused = str(error)
                self._probed_at = time.monotonic()
            if self._refused is not None:
                raise psycopg.OperationalError(self._refused)

    @contextmanager
    def _transaction(self) -> Iterator[Statements]:
        with self._pooled() as db, db.transaction():
            yield Statements(db)

    def _text(self, value: str) -> str:
        """Text PostgreSQL can keep: NUL made U+FFFD."""
        return value.replace("\x00", "\ufffd")

    def ping(self) -> None:
        self._query(  # a write: a read-only standby or a full disk answers reads
            "INSERT INTO counts (key, total, ends_at) VALUES ('ping', 0, ?) ON CONFLICT (key) DO UPDATE SET "
            "ends_at = excluded.ends_at",
            (time.time() + 60,),
        )

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        part = {"id": message.id, "start": start, "text": self._text(text), "saved_at": message.meta["saved_at"]}
        try:
            return bool(self._query(APPEND_TO_ANSWER, part)[0][0])
        except errors.ForeignKeyViolation:  # its conversation was deleted between the check and the insert
            return True

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        rows = self._query(  # one statement, one snapshot: the row and its parts agree even while the answer ends
            WITH_PARTS + "WHERE m.id = %(id)s AND m.conversation_id = %(conversation)s",
            {"id": message_id, "conversation": conversation.id, "start": start},
        )
        return with_parts(rows[0][:-3], start, *rows[0][-3:]) if rows else None

    def messages(self, conversation: Conversation) -> list[Message]:
        rows = self._query(
            WITH_PARTS + "WHERE m.conversation_id = %(conversation)s ORDER BY m.seq",
            {"conversation": conversation.id, "start": 0},
        )
        return [with_parts(row[:-3], 0, *row[-3:]) for row in rows]


class Statements:
    """A connection that takes the shared queries' `?` for a parameter (chatbot/stores/sql.py), psycopg's `%s`."""

    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db

    def execute(self, sql: str, parameters: tuple | dict = ()) -> psycopg.Cursor:
        return self.db.execute(_dialect(sql), parameters)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self.db.cursor() as cursor:
            cursor.executemany(_dialect(sql), rows)


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """A query with psycopg's placeholder (the queries are fixed texts: a few dozen of them)."""
    return sql.replace("?", "%s")
