"""Conversations and messages, and the interface every store implements: one protocol per role, `Store` all of
them."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


def new_id() -> str:
    """An unguessable id for a conversation or a message."""
    return secrets.token_urlsafe(16)


@dataclass
class Conversation:
    id: str
    owner: str
    title: str = "New chat"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    settings: dict[str, Any] = field(default_factory=dict)  # the model picked for it, and more to come
    leaf_id: str = ""  # the last message of the branch shown (chatbot/chat/branches.py); "" for the newest message


@dataclass
class Message:
    id: str
    conversation_id: str
    role: str  # "user" or "assistant"
    content: str
    html: str = ""  # an answer's rendered markdown, made once when it ends
    status: str = "done"  # "done", "streaming", "stopped" or "error"
    error: dict[str, Any] | None = None  # InferenceError.as_dict() when status is "error"
    meta: dict[str, Any] = field(default_factory=dict)  # model, tokens, seconds
    created_at: float = field(default_factory=time.time)
    parent_id: str | None = None  # the message it follows (None: a first message); its alternatives share it


class Conversations(Protocol):
    """Conversations and their messages. Every read of a conversation names its owner."""

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation: ...

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None: ...

    def list_conversations(self, owner: str) -> list[Conversation]: ...

    def update_conversation(self, conversation: Conversation) -> None:
        """Save a conversation's title and settings (not its chosen leaf: choose_branch does)."""

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        """Atomically: set the conversation's title to `title` (and nothing else) if it is still `expected`;
        whether it did (not when it was renamed meanwhile, or is gone)."""

    def delete_conversation(self, conversation: Conversation) -> None:
        """Delete a conversation and all its messages."""

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        """The owner's conversations whose title or messages contain `text`, newest first."""

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        """Give every conversation of `from_owner` to `to_owner` (a browser's chats, on signing in)."""

    def add_message(self, message: Message) -> Message: ...

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        """Atomically, across workers and hosts: unless an answer of the conversation is being written, save
        `messages` (new ones appended; one already stored, an answer to go on with, saved again) and make the
        last, the new answer, the conversation's chosen leaf. False, and nothing changed, when an answer is
        being written: one at a time. Nothing is ever deleted: an edit or a regeneration is a new branch."""

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        """Show the branch that ends at message `leaf_id` from now on (on reload, in every tab)."""

    def update_message(self, message: Message) -> None:
        """Save a message whole; the parts appended to an answer are replaced by its content."""

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        """Add `text`, which begins at character `start` of the content, to an answer being written, and
        set its meta "saved_at" to now. Costs the same however long the answer already is. Returns whether
        the answer should stop (one trip to the store for both): someone asked it to, or its conversation is gone
        (deleted or expired; nothing of it is saved then, here or by update_message)."""

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        """One message of the conversation; with `start`, its content only from that character on (what a
        tab following an answer has not seen yet, read without reading the rest)."""

    def messages(self, conversation: Conversation) -> list[Message]:
        """All the conversation's messages, every branch, in the order they were saved (a parent before its
        children), answers being written with all their parts so far."""


class Files(Protocol):
    """The files attached in conversations, kept with them."""

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        """Keep a file attached in the conversation (its info and bytes); it is deleted with the conversation, and
        expires with it."""

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        """A file of this conversation (info, bytes); None for a file of any other conversation, or none."""

    def kept_size(self, owner: str) -> int:
        """The bytes of the files and the share snapshots kept in all of the owner's conversations."""


class Shares(Protocol):
    """Share links of conversations and the snapshots they show, kept with their conversation."""

    def save_share(
        self, conversation: Conversation, token: str, link: dict[str, Any], snapshot: dict[str, Any] | None = None
    ) -> bool:
        """Keep a share link of the conversation, showing the snapshot named `link["snapshot"]`: `snapshot`, kept
        under that name unless it is already, or (`snapshot` None) one kept for an earlier link. One copy serves
        every link of a snapshot; both are deleted and expire with the conversation. False, and nothing saved,
        when the conversation is gone or (`snapshot` None) no such snapshot is kept."""

    def load_share(self, conversation_id: str, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A share link of that conversation and the snapshot it shows; None when there is none (revoked, or
        gone with its conversation)."""

    def share_links(self, owner: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(conversation id, token, link) of every share link of the owner's conversations, in no order."""

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        """Revoke a share link of the conversation; its snapshot goes with the last link that shows it."""


class Records(Protocol):
    """Records by kind and key (accounts, invitations, the site's settings), which never expire."""

    def create_record(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Save a record unless one of that kind and key exists; whether it did."""

    def save_record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        """Save a record whole, made or replaced."""

    def load_record(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of a kind, in no particular order."""

    def delete_record(self, kind: str, key: str) -> None: ...

    def delete_record_if_unchanged(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Atomically: delete the record only while it still holds `data` (what the caller read of it), not one
        saved or made again since; whether it did."""


class Counters(Protocol):
    """Counters per time window, the same on every worker and host (the limits)."""

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        """Add `amount` to the counter `key` for the current window (windows of `window_seconds` counted from
        the epoch, the same on every worker and host) and return its total so far; counters are forgotten
        once their window has passed."""


class StopSignals(Protocol):
    """Stop pressed for an answer, heard by whichever worker or host writes it."""

    def request_stop(self, message_id: str) -> None:
        """Ask the answer being written to stop, from any tab, worker or host."""

    def stop_requested(self, message_id: str) -> bool:
        """Whether someone pressed Stop for this answer."""


class Archive(Protocol):
    """What a backup reads of everything, and a restore writes back as it was (chatbot/chat/backup.py)."""

    def every_conversation(self) -> list[Conversation]:
        """Every conversation of every owner, in no order."""

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        """(id, info, bytes) of every file kept with the conversation, in no order."""

    def every_record(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, key, data) of every record, in no order."""

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        """Save the conversation as it is, every field (its times and its chosen leaf too), made or replaced, and
        append `messages` as they are, in their order."""


class Store(Conversations, Files, Shares, Records, Counters, StopSignals, Archive, Protocol):
    """Where the chat keeps everything: each role above, and the store's own upkeep. Any method raises
    StoreUnavailable (chatbot.stores.failures), saying why in words, when the store cannot read or save.
    `open_store` returns every store as a Store, so mypy checks each against all of it."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers and can save."""

    def forget_idle(self) -> None:
        """Delete conversations idle longer than the store's idle time (Redis expires them by itself)."""
