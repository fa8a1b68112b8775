"""A store in this process's memory, for tests and throwaway chats: nothing is kept across restarts, and only the
process that holds it sees it (one gunicorn worker).

It keeps what SQLite keeps, as SQLite does: a conversation idle longer than `idle_seconds` and a counter whose
window has passed are forgotten by `forget_idle` (which a new conversation runs), and an answer being written grows
by parts, so saving it costs the same however long it is. One lock makes every call atomic; what goes in or comes
out is a copy, so a caller that changes what it holds changes nothing stored until it saves it.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chatbot.stores.conversations import Conversation, Message, new_id

STOP_SECONDS = 3600  # a stop request outlives any answer


@dataclass
class _Parts:
    """The parts of an answer being written: where each begins in its content, and its text."""

    starts: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def after(self, begin: int) -> str:
        """The text from character `begin` on, reading only the parts from the one `begin` falls in."""
        first = max(0, bisect.bisect_right(self.starts, begin) - 1)
        if first >= len(self.starts):
            return ""
        return "".join(self.texts[first:])[max(0, begin - self.starts[first]) :]


@dataclass
class _Kept:
    """One conversation and everything kept with it."""

    conversation: Conversation
    messages: dict[str, Message] = field(default_factory=dict)  # by id, in the order they were saved
    parts: dict[str, _Parts] = field(default_factory=dict)  # of its answers being written, by message id
    files: dict[str, tuple[dict, bytes]] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # as JSON, by key
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # by token

    def size(self) -> int:
        """The bytes of its files and share snapshots."""
        return sum(len(data) for _, data in self.files.values()) + sum(
            len(snapshot.encode()) for snapshot in self.snapshots.values()
        )


class MemoryStore:
    """Conversations in a dict of this process; safe for many threads (and greenlets)."""

    def __init__(self, idle_seconds: float = 30 * 86400) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.RLock()
        self._kept: dict[str, _Kept] = {}  # by conversation id
        self._counts: dict[str, tuple[float, int]] = {}  # key -> (when its window ends, its total in it)
        self._records: dict[tuple[str, str], str] = {}  # (kind, key) -> JSON
        self._stops: dict[str, float] = {}  # message id -> when Stop was pressed

    def ping(self) -> None:
        """Memory always answers."""

    def forget_idle(self) -> None:
        now = time.time()
        with self._lock:
            for conversation_id, kept in list(self._kept.items()):
                if kept.conversation.updated_at < now - self.idle_seconds:
                    del self._kept[conversation_id]
            self._counts = {key: count for key, count in self._counts.items() if count[0] > now}
            self._stops = {id_: at for id_, at in self._stops.items() if at > now - STOP_SECONDS}

    def _touch(self, kept: _Kept) -> None:
        kept.conversation.updated_at = time.time()

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        self.forget_idle()  # as SQLite does: new chats are rare enough to pay for the clean-up
        conversation = Conversation(id=new_id(), owner=owner, title=title)
        with self._lock:
            self._kept[conversation.id] = _Kept(copy.deepcopy(conversation))
        return conversation

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        with self._lock:
            kept = self._kept.get(conversation_id)
            return copy.deepcopy(kept.conversation) if kept and kept.conversation.owner == owner else None

    def list_conversations(self, owner: str) -> list[Conversation]:
        with self._lock:
            mine = [copy.deepcopy(k.conversation) for k in self._kept.values() if k.conversation.owner == owner]
        return sorted(mine, key=lambda conversation: conversation.updated_at, reverse=True)

    def update_conversation(self, conversation: Conversation) -> None:
        with self._lock:
            if kept := self._kept.get(conversation.id):
                kept.conversation.title = conversation.title
                kept.conversation.settings = copy.deepcopy(conversation.settings)

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        with self._lock:
            kept = self._kept.get(conversation.id)
            if kept is None or kept.conversation.title != expected:
                return False
            kept.conversation.title = title
            return True

    def delete_conversation(self, conversation: Conversation) -> None:
        with self._lock:
            self._kept.pop(conversation.id, None)

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        needle = text.lower()
        return [
            c
            for c in self.list_conversations(owner)
            if needle in c.title.lower() or any(needle in m.content.lower() for m in self.messages(c))
        ]

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        with self._lock:
            for kept in self._kept.values():
                if kept.conversation.owner == from_owner:
                    kept.conversation.owner = to_owner

    def add_message(self, message: Message) -> Message:
        with self._lock:
            if kept := self._kept.get(message.conversation_id):  # none kept for a conversation gone
                kept.messages[message.id] = copy.deepcopy(message)
                self._touch(kept)
        return message

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        with self._lock:
            kept = self._kept.get(conversation.id)
            if kept is None:  # deleted: nothing is saved, and the answer hears so at its first save
                return True
            if any(message.status == "streaming" for message in kept.messages.values()):
                return False
            for message in messages:  # new ones appended; an answer to go on with saved again in its place
                kept.messages[message.id] = copy.deepcopy(message)
            kept.conversation.leaf_id = messages[-1].id
            self._touch(kept)
            return True

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        with self._lock:
            if kept := self._kept.get(conversation.id):
                kept.conversation.leaf_id = leaf_id

    def update_message(self, message: Message) -> None:
        with self._lock:
            kept = self._kept.get(message.conversation_id)
            if kept and message.id in kept.messages:
                kept.messages[message.id] = copy.deepcopy(message)
                kept.parts.pop(message.id, None)

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        with self._lock:
            kept = self._kept.get(message.conversation_id)
            if kept is None or message.id not in kept.messages:  # its conversation is gone: stop
                return True
            parts = kept.parts.setdefault(message.id, _Parts())
            parts.starts.append(start)
            parts.texts.append(text)
            kept.messages[message.id].meta["saved_at"] = message.meta["saved_at"]
            return message.id in self._stops

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        with self._lock:
            kept = self._kept.get(conversation.id)
            if kept is None or message_id not in kept.messages:
                return None
            return self._with_parts(kept, kept.messages[message_id], start)

    def messages(self, conversation: Conversation) -> list[Message]:
        with self._lock:
            kept = self._kept.get(conversation.id)
            return [self._with_parts(kept, message) for message in kept.messages.values()] if kept else []

    def _with_parts(self, kept: _Kept, message: Message, start: int = 0) -> Message:
        """A copy of the message with its content from character `start` on, the parts written so far included."""
        found = copy.deepcopy(message)
        parts = kept.parts.get(message.id) if message.status == "streaming" else None
        written = parts.after(max(start, len(message.content))) if parts else ""
        found.content = message.content[start:] + written
        return found

    def every_conversation(self) -> list[Conversation]:
        with self._lock:
            return [copy.deepcopy(kept.conversation) for kept in self._kept.values()]

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        with self._lock:
            kept = self._kept.get(conversation.id)
            files = kept.files.items() if kept else []
            return [(file_id, copy.deepcopy(info), data) for file_id, (info, data) in files]

    def every_record(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            return [(kind, key, json.loads(data)) for (kind, key), data in self._records.items()]

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        with self._lock:
            kept = self._kept.setdefault(conversation.id, _Kept(conversation))
            kept.conversation = copy.deepcopy(conversation)
            kept.messages.update((message.id, copy.deepcopy(message)) for message in messages)

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        with self._lock:
            if kept := self._kept.get(conversation.id):
                kept.files[file_id] = (copy.deepcopy(info), bytes(data))
                self._touch(kept)

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        with self._lock:
            kept = self._kept.get(conversation.id)
            found = kept.files.get(file_id) if kept else None
            return (copy.deepcopy(found[0]), found[1]) if found else None

    def kept_size(self, owner: str) -> int:
        with self._lock:
            return sum(kept.size() for kept in self._kept.values() if kept.conversation.owner == owner)

    def save_share(
        self, conversation: Conversation, token: str, link: dict[str, Any], snapshot: dict[str, Any] | None = None
    ) -> bool:
        key = link["snapshot"]
        with self._lock:
            kept = self._kept.get(conversation.id)
            if kept is None or (snapshot is None and key not in kept.snapshots):
                return False
            if snapshot is not None:
                kept.snapshots.setdefault(key, json.dumps(snapshot))
            kept.links[token] = copy.deepcopy(link)
            self._touch(kept)
            return True

    def load_share(self, conversation_id: str, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            kept = self._kept.get(conversation_id)
            link = kept.links.get(token) if kept else None
            if kept is None or link is None:
                return None
            return copy.deepcopy(link), json.loads(kept.snapshots[link["snapshot"]])

    def share_links(self, owner: str) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            return [
                (conversation_id, token, copy.deepcopy(link))
                for conversation_id, kept in self._kept.items()
                if kept.conversation.owner == owner
                for token, link in kept.links.items()
            ]

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        with self._lock:
            kept = self._kept.get(conversation.id)
            link = kept.links.pop(token, None) if kept else None
            if kept and link and all(other["snapshot"] != link["snapshot"] for other in kept.links.values()):
                del kept.snapshots[link["snapshot"]]  # the last link that showed it

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        ends_at = (int(time.time() // window_seconds) + 1) * window_seconds  # windows counted from the epoch
        with self._lock:
            counted_until, total = self._counts.get(key, (ends_at, 0))
            total = (total if counted_until == ends_at else 0) + amount
            self._counts[key] = (ends_at, total)
            return total

    def create_record(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        with self._lock:
            if (kind, key) in self._records:
                return False
            self._records[kind, key] = json.dumps(data)
            return True

    def save_record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._records[kind, key] = json.dumps(data)

    def load_record(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            data = self._records.get((kind, key))
        return json.loads(data) if data is not None else None

    def records(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(data) for (each, _), data in self._records.items() if each == kind]

    def delete_record(self, kind: str, key: str) -> None:
        with self._lock:
            self._records.pop((kind, key), None)

    def delete_record_if_unchanged(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        with self._lock:
            if self._records.get((kind, key)) != json.dumps(data):
                return False
            del self._records[kind, key]
            return True

    def request_stop(self, message_id: str) -> None:
        with self._lock:
            self._stops[message_id] = time.time()

    def stop_requested(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._stops
