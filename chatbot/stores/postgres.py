"""The store for a team: conversations in the PostgreSQL database it already runs and backs up, shared by every
worker on every host.

The tables are SQLite's (chatbot/stores/postgres_schema.py brings them up to date at start-up). An answer being
written grows by rows in `answer_parts`, one INSERT each, so saving it costs the same however long it is; one
answer at a time holds because starting one locks its conversation's row. Each call takes a connection from a pool
(psycopg_pool) for its round trips only, checked on the way out of the pool unless it worked in the last second,
so after PostgreSQL restarts the next call reconnects instead of failing on a connection that died. A pool waits
for a connection it cannot make; so that a PostgreSQL that is down is told at once, not after WAIT_SECONDS per
call, a call that gets none within a moment asks PostgreSQL for a connection of its own (one such probe a second
per process).

PostgreSQL's text cannot hold the character NUL (U+0000): in text it keeps, a NUL becomes U+FFFD, as a lone
surrogate does where text enters; JSON keeps it escaped.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors

from chatbot.stores.conversations import Conversation, Message, new_id
from chatbot.stores.failures import StoreUnavailable, translating
from chatbot.stores.postgres_schema import NewerDatabase, migrate

MAX_CONNECTIONS = 10  # per process: a call holds one for its round trips; PostgreSQL allows 100 in all by default
WAIT_SECONDS = 5.0  # for a free connection, or a new one; then the call fails, saying the store does not answer
MOMENT = 0.5  # waited for a pooled connection before asking whether PostgreSQL answers at all
PROBE_SECONDS = 1.0  # how long the answer to that question holds, for every call of the process
JUST_USED = 1.0  # a connection returned to the pool this recently is handed out again unchecked
STOP_SECONDS = 3600  # a stop request outlives any answer
CONVERSATION_COLUMNS = "id, owner, title, created_at, updated_at, settings, leaf_id"
MESSAGE_COLUMNS = "id, conversation_id, role, content, html, status, error, meta, created_at, parent_id"
ADD_MESSAGE = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
SAVE_MESSAGE = (  # appended, or (an answer to go on with) saved again in its place
    f"{ADD_MESSAGE} ON CONFLICT (id) DO UPDATE SET content = excluded.content, html = excluded.html, "
    "status = excluded.status, error = excluded.error, meta = excluded.meta"
)
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
class PostgresStore:
    """Conversations in PostgreSQL; every worker on every host sees the same ones."""

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
    def _connection(self) -> Iterator[psycopg.Connection]:
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
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A connection whose statements commit together when the block ends."""
        with self._connection() as db, db.transaction():
            yield db

    def _query(self, sql: str, parameters: tuple | dict = ()) -> list[tuple]:
        """One statement on its own; its rows (none for a statement that returns none)."""
        with self._connection() as db:
            cursor = db.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []

    def _count(self, sql: str, parameters: tuple = ()) -> int:
        """One statement on its own; how many rows it changed."""
        with self._connection() as db:
            return db.execute(sql, parameters).rowcount

    def ping(self) -> None:
        self._query(  # a write: a read-only standby or a full disk answers reads
            "INSERT INTO counts (key, total, ends_at) VALUES ('ping', 0, %s) ON CONFLICT (key) DO UPDATE SET "
            "ends_at = excluded.ends_at",
            (time.time() + 60,),
        )

    def forget_idle(self) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE updated_at < %s", (now - self.idle_seconds,))
            db.execute("DELETE FROM counts WHERE ends_at < %s", (now,))
            db.execute("DELETE FROM stop_requests WHERE requested_at < %s", (now - STOP_SECONDS,))

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        self.forget_idle()  # new chats are rare enough to pay for the clean-up
        conversation = Conversation(id=new_id(), owner=owner, title=_text(title))
        self._query(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, '{{}}', '')",
            (conversation.id, owner, conversation.title, conversation.created_at, conversation.updated_at),
        )
        return conversation

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = %s AND owner = %s", (conversation_id, owner)
        )
        return _conversation(rows[0]) if rows else None

    def list_conversations(self, owner: str) -> list[Conversation]:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = %s ORDER BY updated_at DESC", (owner,)
        )
        return [_conversation(row) for row in rows]

    def update_conversation(self, conversation: Conversation) -> None:
        self._query(
            "UPDATE conversations SET title = %s, settings = %s WHERE id = %s",
            (_text(conversation.title), json.dumps(conversation.settings), conversation.id),
        )

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        return 1 == self._count(
            "UPDATE conversations SET title = %s WHERE id = %s AND title = %s",
            (_text(title), conversation.id, _text(expected)),
        )

    def delete_conversation(self, conversation: Conversation) -> None:
        self._query("DELETE FROM conversations WHERE id = %s", (conversation.id,))  # all it holds goes with it

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        pattern = "%" + _text(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE owner = %s AND (title ILIKE %s ESCAPE '\\' "
            "OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content ILIKE %s ESCAPE '\\'))"
            " ORDER BY updated_at DESC",
            (owner, pattern, pattern),
        )
        return [_conversation(row) for row in rows]

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        self._query("UPDATE conversations SET owner = %s WHERE owner = %s", (to_owner, from_owner))

    def add_message(self, message: Message) -> Message:
        with self._transaction() as db:
            db.execute(ADD_MESSAGE, _row(message))
            db.execute("UPDATE conversations SET updated_at = %s WHERE id = %s", (time.time(), message.conversation_id))
        return message

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        with self._transaction() as db:
            # the conversation's row, locked until the end: another start waits here, then sees this answer
            db.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (conversation.id,))
            if db.execute(
                "SELECT 1 FROM messages WHERE conversation_id = %s AND status = 'streaming' LIMIT 1", (conversation.id,)
            ).fetchone():
                return False
            with db.cursor() as cursor:
                cursor.executemany(SAVE_MESSAGE, [_row(message) for message in messages])
            db.execute(
                "UPDATE conversations SET updated_at = %s, leaf_id = %s WHERE id = %s",
                (time.time(), messages[-1].id, conversation.id),
            )
        return True

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        self._query("UPDATE conversations SET leaf_id = %s WHERE id = %s", (leaf_id, conversation.id))

    def update_message(self, message: Message) -> None:
        with self._transaction() as db:  # a reader sees the parts or the whole content, never neither
            db.execute(
                "UPDATE messages SET content = %s, html = %s, status = %s, error = %s, meta = %s WHERE id = %s",
                (
                    _text(message.content),
                    _text(message.html),
                    message.status,
                    _json(message.error),
                    json.dumps(message.meta),
                    message.id,
                ),
            )
            db.execute("DELETE FROM answer_parts WHERE message_id = %s", (message.id,))

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        part = {"id": message.id, "start": start, "text": _text(text), "saved_at": message.meta["saved_at"]}
        try:
            return bool(self._query(APPEND_TO_ANSWER, part)[0][0])
        except errors.ForeignKeyViolation:  # its conversation was deleted between the check and the insert
            return True

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        rows = self._query(  # one statement, one snapshot: the row and its parts agree even while the answer ends
            WITH_PARTS + "WHERE m.id = %(id)s AND m.conversation_id = %(conversation)s",
            {"id": message_id, "conversation": conversation.id, "start": start},
        )
        return _with_parts(rows[0], start) if rows else None

    def messages(self, conversation: Conversation) -> list[Message]:
        rows = self._query(
            WITH_PARTS + "WHERE m.conversation_id = %(conversation)s ORDER BY m.seq",
            {"conversation": conversation.id, "start": 0},
        )
        return [_with_parts(row) for row in rows]

    def every_conversation(self) -> list[Conversation]:
        return [_conversation(row) for row in self._query(f"SELECT {CONVERSATION_COLUMNS} FROM conversations")]

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        rows = self._query("SELECT id, info, data FROM files WHERE conversation_id = %s", (conversation.id,))
        return [(file_id, json.loads(info), bytes(data)) for file_id, info, data in rows]

    def every_record(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(kind, key, json.loads(data)) for kind, key, data in self._query("SELECT kind, key, data FROM records")]

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        c = conversation
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
                "(id) DO UPDATE SET owner = excluded.owner, title = excluded.title, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, settings = excluded.settings, leaf_id = excluded.leaf_id",
                (c.id, c.owner, _text(c.title), c.created_at, c.updated_at, json.dumps(c.settings), c.leaf_id),
            )
            with db.cursor() as cursor:
                cursor.executemany(ADD_MESSAGE, [_row(message) for message in messages])

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (conversation_id, id, info, data) VALUES (%s, %s, %s, %s) ON CONFLICT "
                "(conversation_id, id) DO UPDATE SET info = excluded.info, data = excluded.data",
                (conversation.id, file_id, json.dumps(info), data),
            )
            db.execute("UPDATE conversations SET updated_at = %s WHERE id = %s", (time.time(), conversation.id))

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        rows = self._query(
            "SELECT info, data FROM files WHERE conversation_id = %s AND id = %s", (conversation.id, file_id)
        )
        return (json.loads(rows[0][0]), bytes(rows[0][1])) if rows else None

    def kept_size(self, owner: str) -> int:
        rows = self._query(
            "SELECT (SELECT coalesce(sum(octet_length(f.data)), 0) FROM files f JOIN conversations c"
            " ON c.id = f.conversation_id WHERE c.owner = %s)"
            " + (SELECT coalesce(sum(octet_length(s.data)), 0) FROM snapshots s JOIN conversations c"
            " ON c.id = s.conversation_id WHERE c.owner = %s)",
            (owner, owner),
        )
        return int(rows[0][0])

    def save_share(
        self, conversation: Conversation, token: str, link: dict[str, Any], snapshot: dict[str, Any] | None = None
    ) -> bool:
        key = link["snapshot"]
        with self._transaction() as db:  # the conversation locked: no link of it is revoked meanwhile
            if not db.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (conversation.id,)).fetchone():
                return False
            if snapshot is not None:
                db.execute(
                    "INSERT INTO snapshots (conversation_id, key, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (conversation.id, key, json.dumps(snapshot)),
                )
            made = db.execute(
                "INSERT INTO share_links (token, conversation_id, snapshot, data) SELECT %s, %s, %s, %s "
                "WHERE EXISTS (SELECT 1 FROM snapshots WHERE conversation_id = %s AND key = %s)",
                (token, conversation.id, key, json.dumps(link), conversation.id, key),
            ).rowcount
            if made:
                db.execute("UPDATE conversations SET updated_at = %s WHERE id = %s", (time.time(), conversation.id))
            return made == 1

    def load_share(self, conversation_id: str, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        rows = self._query(
            "SELECT l.data, s.data FROM share_links l JOIN snapshots s ON s.conversation_id = l.conversation_id"
            " AND s.key = l.snapshot WHERE l.token = %s AND l.conversation_id = %s",
            (token, conversation_id),
        )
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def share_links(self, owner: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._query(
            "SELECT l.conversation_id, l.token, l.data FROM share_links l JOIN conversations c"
            " ON c.id = l.conversation_id WHERE c.owner = %s",
            (owner,),
        )
        return [(conversation_id, token, json.loads(data)) for conversation_id, token, data in rows]

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (conversation.id,))
            found = db.execute(
                "DELETE FROM share_links WHERE token = %s AND conversation_id = %s RETURNING snapshot",
                (token, conversation.id),
            ).fetchone()
            if found:  # the snapshot goes with the last link that shows it
                db.execute(
                    "DELETE FROM snapshots WHERE conversation_id = %s AND key = %s AND NOT EXISTS"
                    " (SELECT 1 FROM share_links WHERE conversation_id = %s AND snapshot = %s)",
                    (conversation.id, found[0], conversation.id, found[0]),
                )

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        window = int(time.time() // window_seconds)
        rows = self._query(
            "INSERT INTO counts (key, total, ends_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET total = counts.total + excluded.total RETURNING total",
            (f"{key}@{window}", amount, (window + 1) * window_seconds),
        )
        return int(rows[0][0])

    def create_record(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        return 1 == self._count(
            "INSERT INTO records (kind, key, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (kind, key, json.dumps(data)),
        )

    def save_record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self._query(
            "INSERT INTO records (kind, key, data) VALUES (%s, %s, %s) ON CONFLICT (kind, key) DO UPDATE SET "
            "data = excluded.data",
            (kind, key, json.dumps(data)),
        )

    def load_record(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM records WHERE kind = %s AND key = %s", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(data) for (data,) in self._query("SELECT data FROM records WHERE kind = %s", (kind,))]

    def delete_record(self, kind: str, key: str) -> None:
        self._query("DELETE FROM records WHERE kind = %s AND key = %s", (kind, key))

    def request_stop(self, message_id: str) -> None:
        self._query(
            "INSERT INTO stop_requests (message_id, requested_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (message_id, time.time()),
        )

    def stop_requested(self, message_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM stop_requests WHERE message_id = %s", (message_id,)))


def _text(value: str) -> str:
    """Text PostgreSQL can keep: NUL made U+FFFD."""
    return value.replace("\x00", "\ufffd")


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _row(message: Message) -> tuple:
    return (
        message.id,
        message.conversation_id,
        message.role,
        _text(message.content),
        _text(message.html),
        message.status,
        _json(message.error),
        json.dumps(message.meta),
        message.created_at,
        message.parent_id,
    )


def _conversation(row: tuple) -> Conversation:
    id_, owner, title, created_at, updated_at, settings, leaf_id = row
    return Conversation(id_, owner, title, created_at, updated_at, json.loads(settings), leaf_id)


def _with_parts(row: tuple, start: int = 0) -> Message:
    """The message of a WITH_PARTS row, its content from character `start` on, an answer's parts so far included."""
    id_, conversation_id, role, content, html, status, error, meta, created_at, parent_id, first, text, saved_at = row
    message = Message(
        id_,
        conversation_id,
        role,
        content,
        html,
        status,
        json.loads(error) if error else None,
        json.loads(meta),
        created_at,
        parent_id,
    )
    parts = ""
    if text is not None:  # the first part may begin before `begin`; saved_at is the newest part's
        parts = text[max(0, max(start, len(content)) - first) :]
        message.meta["saved_at"] = saved_at
    message.content = content[start:] + parts
    return message
