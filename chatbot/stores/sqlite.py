"""The embedded default store: one SQLite file, WAL mode, a small pool of connections.

An answer being written grows by rows in `answer_parts`, one INSERT each (its row in `messages` keeps the
content and meta it started with; the newest part tells when it was last saved), so saving it costs the same
however long it is; the whole content is written once, when it ends. The queries it shares with PostgreSQL are
in chatbot/stores/sql.py; this file keeps the file, its pool and lock, and reading an answer with its parts.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chatbot.stores.conversations import Conversation, Message
from chatbot.stores.failures import StoreUnavailable, translating
from chatbot.stores.sql import MESSAGE_COLUMNS, SQLStore, with_parts

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    leaf_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated_at);
CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (updated_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    html TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    meta TEXT NOT NULL,
    created_at REAL NOT NULL,
    parent_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX IF NOT EXISTS answers_being_written ON messages (conversation_id) WHERE status = 'streaming';
CREATE TABLE IF NOT EXISTS stop_requests (message_id TEXT PRIMARY KEY, requested_at REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, key))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (key TEXT PRIMARY KEY, total INTEGER NOT NULL, ends_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS answer_parts (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    text TEXT NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (message_id, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    info TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conversation_id, key)
);
CREATE TABLE IF NOT EXISTS share_links (
    token TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    data TEXT NOT NULL,
    FOREIGN KEY (conversation_id, snapshot) REFERENCES snapshots (conversation_id, key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS share_links_by_snapshot ON share_links (conversation_id, snapshot);
"""
POOL_SIZE = 16  # connections per process; SQLite writes one at a time anyway
MIN_FREE_BYTES = 16 * 1024 * 1024  # less free disk than this, and the chat is not ready: answers would not be saved
EACH_FOLLOWS_THE_ONE_BEFORE = (  # messages saved before branches: one line, each after the previous
    "UPDATE messages SET parent_id = (SELECT earlier.id FROM messages earlier WHERE earlier.conversation_id = "
    "messages.conversation_id AND earlier.seq < messages.seq ORDER BY earlier.seq DESC LIMIT 1)"
)


def explain(store: SQLiteStore, error: BaseException) -> str:
    """What a failure of the file means for the user, and what the server's owner can do."""
    words = str(error).lower()
    if isinstance(error, queue.Empty):
        return "The chat is too busy to reach its conversations right now. Try again in a moment."
    if "full" in words:
        return (
            f"The disk that holds the conversations ({store.directory}) is full, so nothing can be saved. "
            "Whoever runs the chat must free some space on it; then send again."
        )
    if "locked" in words or "busy" in words:
        return "The conversations file is busy (another process holds it). Try again in a moment."
    return (
        f"The conversations file ({store.path}) cannot be used: {error}. Whoever runs the chat should check "
        "that disk (space, permissions); then try again."
    )


@translating((sqlite3.Error, queue.Empty), explain)
class SQLiteStore(SQLStore):
    """Conversations in a SQLite file; safe for many threads and processes."""

    def __init__(self, path: str, idle_seconds: float = 30 * 86400) -> None:
        self.path = path
        self.idle_seconds = idle_seconds
        self.directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(self.directory, exist_ok=True)
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._opening = threading.Lock()
        self._opened = 0
        self._set_up(self.directory)

    def _set_up(self, directory: str) -> None:
        """WAL mode and the tables, one process at a time: workers starting together on a new file would
        otherwise meet "database is locked" (switching to WAL does not wait for the lock) and fail to boot."""
        folder = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            with self._connection() as db, db:
                db.execute("PRAGMA journal_mode=WAL")  # kept in the file for every later connection
                db.executescript(SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
                if "settings" not in columns:  # a file made before conversations had settings
                    db.execute("ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'")
                if "leaf_id" not in columns:  # a file made before branches
                    db.execute("ALTER TABLE conversations ADD COLUMN leaf_id TEXT NOT NULL DEFAULT ''")
                    db.execute("ALTER TABLE messages ADD COLUMN parent_id TEXT")
                    db.execute(EACH_FOLLOWS_THE_ONE_BEFORE)
                if "requested_at" not in {row[1] for row in db.execute("PRAGMA table_info(stop_requests)")}:
                    # a file made before stop requests were forgotten: those it holds go at the next clean-up
                    db.execute("ALTER TABLE stop_requests ADD COLUMN requested_at REAL NOT NULL DEFAULT 0")
        finally:
            os.close(folder)  # and with it the lock

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection from the pool for one call: a thread or greenlet per socket must not each keep one,
        and a burst waits for a free connection rather than opening more to fight over the file's lock."""
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            with self._opening:
                opened = self._open() if self._opened < POOL_SIZE else None
                self._opened += opened is not None
            db = opened or self._idle.get(timeout=30)
        try:
            yield db
        finally:
            self._idle.put(db)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """The file's write lock from the start: the checks and the writes of the block hold it together. With
        `begin="BEGIN"`, only reads: they see the file as it was at the first of them (rows and parts agree)."""
        with self._connection() as db, db:
            db.execute(begin)
            yield db

    def ping(self) -> None:
        self._query("SELECT count(*) FROM conversations")
        free = shutil.disk_usage(self.directory).free
        if free < MIN_FREE_BYTES:
            raise StoreUnavailable(
                f"The disk that holds the conversations ({self.directory}) has {free // 1024:,} KB free, too little "
                "to save answers. Free some space on it."
            )

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        with self._connection() as db:
            saved = db.execute(  # not once its conversation is deleted (with its messages)
                "INSERT INTO answer_parts (message_id, start, text, saved_at) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?)",
                (message.id, start, text, message.meta["saved_at"], message.id),
            )
            if saved.rowcount == 0:
                return True
            return db.execute("SELECT 1 FROM stop_requests WHERE message_id = ?", (message.id,)).fetchone() is not None

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        with self._transaction("BEGIN") as db:  # the row and its parts agree even while the answer ends
            row = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation.id),
            ).fetchone()
            return _with_parts(db, row, start) if row else None

    def messages(self, conversation: Conversation) -> list[Message]:
        with self._transaction("BEGIN") as db:
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation.id,),
            ).fetchall()
            return [_with_parts(db, row) for row in rows]


def _with_parts(db: sqlite3.Connection, row: tuple, start: int = 0) -> Message:
    """The message of the row with its content from character `start` on, the parts of an answer being written
    included: those from the one that character (or the content's end) falls in."""
    id_, content, status = row[0], row[3], row[5]
    parts: list[tuple] = []
    if status == "streaming":
        parts = db.execute(
            "SELECT start, text, saved_at FROM answer_parts WHERE message_id = ? AND start >= "
            "coalesce((SELECT max(start) FROM answer_parts WHERE message_id = ? AND start <= ?), 0) ORDER BY start",
            (id_, id_, max(start, len(content))),
        ).fetchall()
    if not parts:
        return with_parts(row, start, None, None, None)
    return with_parts(row, start, parts[0][0], "".join(text for _, text, _ in parts), parts[-1][2])
