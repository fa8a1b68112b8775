"""What the SQLite and PostgreSQL stores share: the same tables, so the same queries, written once here with `?`
for a parameter (PostgreSQL's store turns it into psycopg's `%s`).

Each store keeps only what its database does its own way: its connections and transactions (SQLite's file lock,
PostgreSQL's pool and row locks), how it reads an answer being written with its parts, how it saves a part, how
it checks that it answers, and the hooks below: the word for a case-insensitive match, the size of a column in
bytes, the lock on a conversation's row, and the text it can keep.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from chatbot.stores.conversations import Conversation, Message, new_id

CONVERSATION_COLUMNS = "id, owner, title, created_at, updated_at, settings, leaf_id"
MESSAGE_COLUMNS = "id, conversation_id, role, content, html, status, error, meta, created_at, parent_id"
ADD_MESSAGE = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SAVE_MESSAGE = (  # appended, or (an answer to go on with) saved again in its place
    f"{ADD_MESSAGE} ON CONFLICT (id) DO UPDATE SET content = excluded.content, html = excluded.html, "
    "status = excluded.status, error = excluded.error, meta = excluded.meta"
)
RESTORE_CONVERSATION = (  # replaced in place, not deleted and made again: that would delete what is kept with it
    f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
    "SET owner = excluded.owner, title = excluded.title, created_at = excluded.created_at, "
    "updated_at = excluded.updated_at, settings = excluded.settings, leaf_id = excluded.leaf_id"
)
STOP_SECONDS = 3600  # a stop request outlives any answer


class SQLStore(ABC):
    """A store on SQL tables (chatbot/stores/sqlite.py, chatbot/stores/postgres.py): every method of the `Store`
    protocol that both write the same way. A connection here is anything with `execute(sql, parameters)`, which
    returns a cursor (`fetchone`, `fetchall`, `rowcount`, `description`), and `executemany(sql, rows)`."""

    idle_seconds: float
    LIKE = "LIKE"  # a case-insensitive match of text (SQLite's LIKE is, for ASCII letters)
    BYTES = "length(CAST({} AS BLOB))"  # the size of a column in bytes, text or not
    LOCK = ""  # what locks the rows a transaction's SELECT reads until it ends (none needed: SQLite locks the file)

    @abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """A connection for one call, its statements each on its own."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A connection whose statements commit together when the block ends, no other write between them."""

    def _text(self, value: str) -> str:
        """Text as the database can keep it."""
        return value

    def _query(self, sql: str, parameters: tuple | dict = ()) -> list[tuple]:
        """One statement on its own; its rows (none for a statement that returns none)."""
        with self._connection() as db:
            cursor = db.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []

    def _count(self, sql: str, parameters: tuple = ()) -> int:
        """One statement on its own; how many rows it changed."""
        with self._connection() as db:
            return int(db.execute(sql, parameters).rowcount)

    def _locked(self, db: Any, conversation: Conversation) -> bool:
        """Whether the conversation is there, its row locked until the transaction of `db` ends."""
        return (
            db.execute(f"SELECT 1 FROM conversations WHERE id = ?{self.LOCK}", (conversation.id,)).fetchone()
            is not None
        )

    def forget_idle(self) -> None:
        now = time.time()
        with self._transaction() as db:
            cutoff = (now - self.idle_seconds,)
            db.execute(
                "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE updated_at < ?)",
                cutoff,
            )
            db.execute("DELETE FROM conversations WHERE updated_at < ?", cutoff)
            db.execute("DELETE FROM counts WHERE ends_at < ?", (now,))
            db.execute("DELETE FROM stop_requests WHERE requested_at < ?", (now - STOP_SECONDS,))

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        self.forget_idle()  # new chats are rare enough to pay for the clean-up
        conversation = Conversation(id=new_id(), owner=owner, title=self._text(title))
        self._query(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, '{{}}', '')",
            (conversation.id, owner, conversation.title, conversation.created_at, conversation.updated_at),
        )
        return conversation

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
        )
        return _conversation(rows[0]) if rows else None

    def list_conversations(self, owner: str) -> list[Conversation]:
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = ? ORDER BY updated_at DESC", (owner,)
        )
        return [_conversation(row) for row in rows]

    def every_conversation(self) -> list[Conversation]:
        return [_conversation(row) for row in self._query(f"SELECT {CONVERSATION_COLUMNS} FROM conversations")]

    def update_conversation(self, conversation: Conversation) -> None:
        self._query(
            "UPDATE conversations SET title = ?, settings = ? WHERE id = ?",
            (self._text(conversation.title), json.dumps(conversation.settings), conversation.id),
        )

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        return 1 == self._count(
            "UPDATE conversations SET title = ? WHERE id = ? AND title = ?",
            (self._text(title), conversation.id, self._text(expected)),
        )

    def delete_conversation(self, conversation: Conversation) -> None:
        with self._transaction() as db:  # all it holds goes with it
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation.id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation.id,))

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        pattern = "%" + self._text(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE owner = ? AND (title {self.LIKE} ? ESCAPE '\\' "
            f"OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content {self.LIKE} ? "
            "ESCAPE '\\')) ORDER BY updated_at DESC",
            (owner, pattern, pattern),
        )
        return [_conversation(row) for row in rows]

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        self._query("UPDATE conversations SET owner = ? WHERE owner = ?", (to_owner, from_owner))

    def add_message(self, message: Message) -> Message:
        with self._transaction() as db:
            db.execute(ADD_MESSAGE, self._row(message))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), message.conversation_id))
        return message

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        with self._transaction() as db:
            self._locked(db, conversation)  # another start waits here, then sees this answer
            if db.execute(
                "SELECT 1 FROM messages WHERE conversation_id = ? AND status = 'streaming' LIMIT 1", (conversation.id,)
            ).fetchone():
                return False
            db.executemany(SAVE_MESSAGE, [self._row(message) for message in messages])
            db.execute(
                "UPDATE conversations SET updated_at = ?, leaf_id = ? WHERE id = ?",
                (time.time(), messages[-1].id, conversation.id),
            )
        return True

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        self._query("UPDATE conversations SET leaf_id = ? WHERE id = ?", (leaf_id, conversation.id))

    def update_message(self, message: Message) -> None:
        _, _, _, content, html, status, error, meta, _, _ = self._row(message)
        with self._transaction() as db:  # a reader sees the parts or the whole content, never neither
            db.execute(
                "UPDATE messages SET content = ?, html = ?, status = ?, error = ?, meta = ? WHERE id = ?",
                (content, html, status, error, meta, message.id),
            )
            db.execute("DELETE FROM answer_parts WHERE message_id = ?", (message.id,))

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        c = conversation
        with self._transaction() as db:
            db.execute(
                RESTORE_CONVERSATION,
                (c.id, c.owner, self._text(c.title), c.created_at, c.updated_at, json.dumps(c.settings), c.leaf_id),
            )
            db.executemany(ADD_MESSAGE, [self._row(message) for message in messages])

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (conversation_id, id, info, data) VALUES (?, ?, ?, ?) ON CONFLICT "
                "(conversation_id, id) DO UPDATE SET info = excluded.info, data = excluded.data",
                (conversation.id, file_id, json.dumps(info), data),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation.id))

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        rows = self._query(
            "SELECT info, data FROM files WHERE conversation_id = ? AND id = ?", (conversation.id, file_id)
        )
        return (json.loads(rows[0][0]), bytes(rows[0][1])) if rows else None

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        rows = self._query("SELECT id, info, data FROM files WHERE conversation_id = ?", (conversation.id,))
        return [(file_id, json.loads(info), bytes(data)) for file_id, info, data in rows]

    def kept_size(self, owner: str) -> int:
        rows = self._query(
            f"SELECT (SELECT coalesce(sum({self.BYTES.format('f.data')}), 0) FROM files f JOIN conversations c"
            " ON c.id = f.conversation_id WHERE c.owner = ?)"
            f" + (SELECT coalesce(sum({self.BYTES.format('s.data')}), 0) FROM snapshots s JOIN conversations c"
            " ON c.id = s.conversation_id WHERE c.owner = ?)",
            (owner, owner),
        )
        return int(rows[0][0])

    def save_share(
        self, conversation: Conversation, token: str, link: dict[str, Any], snapshot: dict[str, Any] | None = None
    ) -> bool:
        key = link["snapshot"]
        with self._transaction() as db:  # the conversation locked: no link of it is revoked meanwhile
            if not self._locked(db, conversation):
                return False
            if snapshot is not None:
                db.execute(
                    "INSERT INTO snapshots (conversation_id, key, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (conversation.id, key, json.dumps(snapshot)),
                )
            made = db.execute(
                "INSERT INTO share_links (token, conversation_id, snapshot, data) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM snapshots WHERE conversation_id = ? AND key = ?)",
                (token, conversation.id, key, json.dumps(link), conversation.id, key),
            ).rowcount
            if made:
                db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation.id))
            return made == 1

    def load_share(self, conversation_id: str, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        rows = self._query(
            "SELECT l.data, s.data FROM share_links l JOIN snapshots s ON s.conversation_id = l.conversation_id"
            " AND s.key = l.snapshot WHERE l.token = ? AND l.conversation_id = ?",
            (token, conversation_id),
        )
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def share_links(self, owner: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._query(
            "SELECT l.conversation_id, l.token, l.data FROM share_links l JOIN conversations c"
            " ON c.id = l.conversation_id WHERE c.owner = ?",
            (owner,),
        )
        return [(conversation_id, token, json.loads(data)) for conversation_id, token, data in rows]

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        with self._transaction() as db:
            self._locked(db, conversation)
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

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        window = int(time.time() // window_seconds)
        rows = self._query(
            "INSERT INTO counts (key, total, ends_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET total = counts.total + excluded.total RETURNING total",
            (f"{key}@{window}", amount, (window + 1) * window_seconds),
        )
        return int(rows[0][0])

    def create_record(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        return 1 == self._count(
            "INSERT INTO records (kind, key, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (kind, key, json.dumps(data)),
        )

    def save_record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self._query(
            "INSERT INTO records (kind, key, data) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
            "data = excluded.data",
            (kind, key, json.dumps(data)),
        )

    def load_record(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM records WHERE kind = ? AND key = ?", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(data) for (data,) in self._query("SELECT data FROM records WHERE kind = ?", (kind,))]

    def every_record(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(kind, key, json.loads(data)) for kind, key, data in self._query("SELECT kind, key, data FROM records")]

    def delete_record(self, kind: str, key: str) -> None:
        self._query("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def delete_record_if_unchanged(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        return 1 == self._count(
            "DELETE FROM records WHERE kind = ? AND key = ? AND data = ?", (kind, key, json.dumps(data))
        )

    def request_stop(self, message_id: str) -> None:
        self._query(
            "INSERT INTO stop_requests (message_id, requested_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (message_id, time.time()),
        )

    def stop_requested(self, message_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM stop_requests WHERE message_id = ?", (message_id,)))

    def _row(self, message: Message) -> tuple:
        """A message as the columns MESSAGE_COLUMNS name."""
        return (
            message.id,
            message.conversation_id,
            message.role,
            self._text(message.content),
            self._text(message.html),
            message.status,
            _json(message.error),
            json.dumps(message.meta),
            message.created_at,
            message.parent_id,
        )


def with_parts(row: tuple, start: int, first: int | None, parts: str | None, saved_at: float | None) -> Message:
    """The message of a row of MESSAGE_COLUMNS, its content from character `start` on, with the parts of an answer
    being written so far: their text joined, from the part at `first` on (it may begin before the content's
    end or `start`), the newest saved at `saved_at`."""
    message = _message(row)
    if parts is not None and first is not None:
        parts = parts[max(0, max(start, len(message.content)) - first) :]
        message.meta["saved_at"] = saved_at
    message.content = message.content[start:] + (parts or "")
    return message


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value)


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
