"""How many answers one person may have being written at once, in all their chats, on every worker and host:
MAX_ANSWERS_AT_ONCE per owner (an account, or a browser session without accounts) and
MAX_ANSWERS_AT_ONCE_PER_ADDRESS per network address (0: no limit).

Each answer holds a slot of each (chat/slots.py: records made once, so two sends at the same instant cannot both
take the last one) from before anything is sent until its writer is done; once it has started, its slots name it.
A slot is free again when its answer is no longer being written (its writer crashed: not saved for
running.STALE_SECONDS; or it ended and its writer died before letting go), or when no answer started in it within
STALE_SECONDS: a crashed answer never holds a slot for long.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chatbot.chat import slots
from chatbot.chat.limits import address_key
from chatbot.chat.running import STALE_SECONDS, is_abandoned
from chatbot.stores.conversations import Conversation, Message, Store

KIND = (
    "answers being written"  # records: one per person and slot, {"token", "owner", "conversation", "message", "since"}
)


class TooManyAtOnce(Exception):
    """An answer cannot start: its person has as many being written as they may (the words say so)."""


@dataclass
class Held:
    """The slots one answer holds (their keys), told apart from whoever takes them over by `token`."""

    store: Store
    owner: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    keys: list[str] = field(default_factory=list)

    def record(self, message: Message | None = None) -> dict[str, Any]:
        named = {"conversation": message.conversation_id, "message": message.id} if message else {}
        return {"token": self.token, "owner": self.owner, "since": time.time(), **named}

    def name(self, message: Message) -> None:
        """The answer `message` has started: its slots are held as long as it is being written."""
        for key, _ in self._still_held():
            self.store.save_record(KIND, key, self.record(message))

    def release(self) -> None:
        """The answer's writer is done: its slots are free (each deleted only while still its own: once its answer
        ended, another may take a slot over between the read and the delete)."""
        for key, record in self._still_held():
            self.store.delete_record_if_unchanged(KIND, key, record)

    def _still_held(self) -> list[tuple[str, dict[str, Any]]]:
        """The slots that are still this answer's (none taken over since): their keys and records."""
        records = [(key, self.store.load_record(KIND, key) or {}) for key in self.keys]
        return [(key, record) for key, record in records if record.get("token") == self.token]


def claim(store: Store, config: dict, owner: str, address: str | None) -> Held:
    """A slot for one more answer of this owner and address; TooManyAtOnce, in words that say what to do, when
    either has as many answers being written as it may."""
    held = Held(store, owner)
    for who, allowed, key in (
        ("You have", config["MAX_ANSWERS_AT_ONCE"], f"session:{owner}"),
        ("Your network address has", config["MAX_ANSWERS_AT_ONCE_PER_ADDRESS"], f"address:{address_key(address)}"),
    ):
        if not allowed:
            continue
        slot = slots.claim(store, KIND, key, allowed, held.record(), partial(_free, store))
        if slot is None:
            held.release()
            answers = "answer" if allowed == 1 else "answers"
            raise TooManyAtOnce(f"{who} {allowed} {answers} being written; wait for one to finish or stop one.")
        held.keys.append(slot)
    return held


def _free(store: Store, held: dict) -> bool:
    """Whether the slot of this record is free: its answer is no longer being written, or none started in time."""
    if not held.get("message"):
        return time.time() - held.get("since", 0) >= STALE_SECONDS
    answer = store.read_message(Conversation(held["conversation"], held["owner"]), held["message"])
    return answer is None or answer.status != "streaming" or is_abandoned(answer)
