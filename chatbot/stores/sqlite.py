"""The embedded default store: one SQLite file, WAL mode, a small pool of connections.

An answer being written grows by rows in `answer_parts`, one INSERT each (its row in `messages` keeps the
content and meta it started with; the newest part tells when it was last saved), so saving it costs the same
however long it is; the whole content is written once, when it ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chatbot.stores.conversations import Conversation, Message, new_id
from chatbot.stores.failures import StoreUnavailable, translating

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
CREATE TABLE IF NOT EXISTS stop_requests (message_id TEXT PRIMARY KEY);
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
CONVERSATION_COLUMNS = "id, owner, title, created_at, updated_at, settings, leaf_id"
MESSAGE_COLUMNS = "id, conversation_id, role, content, html, status, error, meta, created_at, parent_id"
SAVE_MESSAGE = (  # appended, or (an answer to go on with) saved again in its place
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "content = excluded.content, html = excluded.html, status = excluded.status, error = excluded.error, "
    "meta = excluded.meta"
)
RESTORE_CONVERSATION = (  # replaced in place, not deleted and made again: that would delete what is kept with it
    f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
    "SET owner = excluded.owner, title = excluded.title, created_at = excluded.created_at, "
    "updated_at = excluded.updated_at, settings = excluded.settings, leaf_id = excluded.leaf_id"
)
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
class SQLiteStore:
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
            with self._transaction() as db:
                db.execute("PRAGMA journal_mode=WAL")  # kept in the file for every later connection
                db.executescript(SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
                if "settings" not in columns:  # a file made before conversations had settings
                    db.execute("ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'")
                if "leaf_id" not in columns:  # a file made before branches
                    db.execute("ALTER TABLE conversations ADD COLUMN leaf_id TEXT NOT NULL DEFAULT ''")
                    db.execute("ALTER TABLE messages ADD COLUMN parent_id TEXT")
                    db.execute(EACH_FOLLOWS_THE_ONE_BEFORE)
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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose statements commit together when the block ends (BEGIN is the caller's)."""
        with self._connection() as db, db:
            yield db

    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """One statement on its own; its rows."""
        with self._connection() as db:
            return db.execute(sql, parameters).fetchall()

    def forget_idle(self) -> None:
        cutoff = time.time() - self.idle_seconds
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE updated_at < ?)",
                (cutoff,),
            )
            db.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,))
            db.execute("DELETE FROM counts WHERE ends_at < ?", (time.time(),))

    def ping(self) -> None:
        self._query("SELECT count(*) FROM conversations")
        free = shutil.disk_usage(self.directory).free
        if free < MIN_FREE_BYTES:
            raise StoreUnavailable(
                f"The disk that holds the conversations ({self.directory}) has {free // 1024:,} KB free, too little "
                "to save answers. Free some space on it."
            )

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        self.forget_idle()  # new chats are rare enough to pay for the clean-up
        conversation = Conversation(id=new_id(), owner=owner, title=title)
        self._query(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conversation.id, owner, title, conversation.created_at, conversation.updated_at, "{}", ""),
        )
        return conversation

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
        )
        return _conversation(rows[0]) if rows else None

    def list_conversations(self, owner: str) -> list[Conversation]:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = ? ORDER BY updated_at DESC",
            (owner,),
        )
        return [_conversation(row) for row in rows]

    def delete_conversation(self, conversation: Conversation) -> None:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation.id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation.id,))

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE owner = ? AND (title LIKE ? ESCAPE '\\' "
            "OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content LIKE ? ESCAPE '\\')) "
            "ORDER BY updated_at DESC",
            (owner, pattern, pattern),
        )
        return [_conversation(row) for row in rows]

    def update_conversation(self, conversation: Conversation) -> None:
        self._query(
            "UPDATE conversations SET title = ?, settings = ? WHERE id = ?",
            (conversation.title, json.dumps(conversation.settings), conversation.id),
        )

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        with self._connection() as db:
            cursor = db.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title = ?", (title, conversation.id, expected)
            )
            return cursor.rowcount == 1

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO files (conversation_id, id, info, data) VALUES (?, ?, ?, ?)",
                (conversation.id, file_id, json.dumps(info), data),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation.id))

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        rows = self._query(
            "SELECT info, data FROM files WHERE conversation_id = ? AND id = ?", (conversation.id, file_id)
        )
        return (json.loads(rows[0][0]), bytes(rows[0][1])) if rows else None

    def kept_size(self, owner: str) -> int:
        rows = self._query(
            "SELECT (SELECT COALESCE(SUM(LENGTH(files.data)), 0) FROM files JOIN conversations"
            " ON conversations.id = files.conversation_id WHERE conversations.owner = ?)"
            " + (SELECT COALESCE(SUM(LENGTH(CAST(snapshots.data AS BLOB))), 0) FROM snapshots JOIN conversations"
            " ON conversations.id = snapshots.conversation_id WHERE conversations.owner = ?)",
            (owner, owner),
        )
        return int(rows[0][0])

    def save_share(self, conversation: Conversation, token: str, link: dict, snapshot: dict | None = None) -> bool:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            if snapshot is not None:
                db.execute(
                    "INSERT OR IGNORE INTO snapshots (conversation_id, key, data) SELECT ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?)",
                    (conversation.id, link["snapshot"], json.dumps(snapshot), conversation.id),
                )
            made = db.execute(
                "INSERT INTO share_links (token, conversation_id, snapshot, data) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM snapshots WHERE conversation_id = ? AND key = ?)",
                (token, conversation.id, link["snapshot"], json.dumps(link), conversation.id, link["snapshot"]),
            )
            if made.rowcount:
                db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation.id))
            return made.rowcount == 1

    def load_share(self, conversation_id: str, token: str) -> tuple[dict, dict] | None:
        rows = self._query(
            "SELECT share_links.data, snapshots.data FROM share_links JOIN snapshots ON snapshots.conversation_id ="
            " share_links.conversation_id AND snapshots.key = share_links.snapshot"
            " WHERE share_links.token = ? AND share_links.conversation_id = ?",
            (token, conversation_id),
        )
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def share_links(self, owner: str) -> list[tuple[str, str, dict]]:
        rows = self._query(
            "SELECT share_links.conversation_id, token, data FROM share_links JOIN conversations"
            " ON conversations.id = share_links.conversation_id WHERE conversations.owner = ?",
            (owner,),
        )
        return [(conversation_id, token, json.loads(data)) for conversation_id, token, data in rows]

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            found = db.execute(
                "DELETE FROM share_links WHERE token = ? AND conversation_id = ? RETURNING snapshot",
                (token, conversation.id),
            ).fetchone()
            if found:  # the snapshot goes with the last link that shows it
                db.execute(
                    "DELETE FROM snapshots WHERE conversation_id = ? AND key = ? AND NOT EXISTS"
                    " (SELECT 1 FROM share_links WHERE conversation_id = ? AND snapshot = ?)",
                    (conversation.id, found[0], conversation.id, found[0]),
                )

    def add_message(self, message: Message) -> Message:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(message))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), message.conversation_id))
        return message

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")  # the check and the writes hold the file's write lock together
            if db.execute(
                "SELECT 1 FROM messages WHERE conversation_id = ? AND status = 'streaming' LIMIT 1", (conversation.id,)
            ).fetchone():
                return False
            db.executemany(SAVE_MESSAGE, [_row(message) for message in messages])
            db.execute(
                "UPDATE conversations SET updated_at = ?, leaf_id = ? WHERE id = ?",
                (time.time(), messages[-1].id, conversation.id),
            )
        return True

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        self._query("UPDATE conversations SET leaf_id = ? WHERE id = ?", (leaf_id, conversation.id))

    def update_message(self, message: Message) -> None:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE messages SET content = ?, html = ?, status = ?, error = ?, meta = ? WHERE id = ?",
                (
                    message.content,
                    message.html,
                    message.status,
                    _json(message.error),
                    json.dumps(message.meta),
                    message.id,
                ),
            )
            db.execute("DELETE FROM answer_parts WHERE message_id = ?", (message.id,))

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
        with self._transaction() as db:
            db.execute("BEGIN")  # one snapshot: the row and its parts agree even while the answer ends
            row = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation.id),
            ).fetchone()
            return _with_parts(db, _message(row), start) if row else None

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        window = int(time.time() // window_seconds)
        rows = self._query(
            "INSERT INTO counts (key, total, ends_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET total = total + excluded.total RETURNING total",
            (f"{key}@{window}", amount, (window + 1) * window_seconds),
        )
        return rows[0][0]

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        self._query("UPDATE conversations SET owner = ? WHERE owner = ?", (to_owner, from_owner))

    def create_record(self, kind: str, key: str, data: dict) -> bool:
        with self._connection() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO records (kind, key, data) VALUES (?, ?, ?)", (kind, key, json.dumps(data))
            )
            return cursor.rowcount == 1

    def save_record(self, kind: str, key: str, data: dict) -> None:
        self._query("INSERT OR REPLACE INTO records (kind, key, data) VALUES (?, ?, ?)", (kind, key, json.dumps(data)))

    def load_record(self, kind: str, key: str) -> dict | None:
        rows = self._query("SELECT data FROM records WHERE kind = ? AND key = ?", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def records(self, kind: str) -> list[dict]:
        return [json.loads(data) for (data,) in self._query("SELECT data FROM records WHERE kind = ?", (kind,))]

    def delete_record(self, kind: str, key: str) -> None:
        self._query("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def request_stop(self, message_id: str) -> None:
        self._query("INSERT OR IGNORE INTO stop_requests (message_id) VALUES (?)", (message_id,))

    def stop_requested(self, message_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM stop_requests WHERE message_id = ?", (message_id,)))

    def every_conversation(self) -> list[Conversation]:
        return [_conversation(row) for row in self._query(f"SELECT {CONVERSATION_COLUMNS} FROM conversations")]

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        rows = self._query("SELECT id, info, data FROM files WHERE conversation_id = ?", (conversation.id,))
        return [(file_id, json.loads(info), bytes(data)) for file_id, info, data in rows]

    def every_record(self) -> list[tuple[str, str, dict]]:
        return [(kind, key, json.loads(data)) for kind, key, data in self._query("SELECT kind, key, data FROM records")]

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        with self._transaction() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(RESTORE_CONVERSATION, _conversation_row(conversation))
            db.executemany(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(message) for message in messages],
            )

    def messages(self, conversation: Conversation) -> list[Message]:
        with self._transaction() as db:
            db.execute("BEGIN")
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation.id,),
            ).fetchall()
            return [_with_parts(db, _message(row)) for row in rows]


def _with_parts(db: sqlite3.Connection, message: Message, start: int = 0) -> Message:
    """The message with its content from character `start` on, the parts of an answer being written included."""
    parts = ""
    if message.status == "streaming":
        begin = max(start, len(message.content))
        rows = db.execute(
            "SELECT start, text, saved_at FROM answer_parts WHERE message_id = ? AND start >= "
            "coalesce((SELECT max(start) FROM answer_parts WHERE message_id = ? AND start <= ?), 0) ORDER BY start",
            (message.id, message.id, begin),
        ).fetchall()
        if rows:  # the first part may begin before `begin`; the last is the newest
            parts = "".join(text for _, text, _ in rows)[max(0, begin - rows[0][0]) :]
            message.meta["saved_at"] = rows[-1][2]
    message.content = message.content[start:] + parts
    return message


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _row(message: Message) -> tuple:
    return (
        message.id,
        message.conversation_id,
        message.role,
        message.content,
        message.html,
        message.status,
        _json(message.error),
        json.dumps(message.meta),
        message.created_at,
        message.parent_id,
    )


def _conversation_row(conversation: Conversation) -> tuple:
    c = conversation
    return (c.id, c.owner, c.title, c.created_at, c.updated_at, json.dumps(c.settings), c.leaf_id)


def _conversation(row: tuple) -> Conversation:
    id_, owner, title, created_at, updated_at, settings, leaf_id = row
    return Conversation(id_, owner, title, created_at, updated_at, json.loads(settings), leaf_id)


def _message(row: tuple) -> Message:
    id_, conversation_id, role, content, html, status, error, meta, created_at, parent_id = row
    return Message(
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
