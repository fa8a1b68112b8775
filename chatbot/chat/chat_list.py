"""The owner's list of chats as the sidebar shows it: grouped by their last activity (Today, Yesterday, Previous 7
days, Older), and the empty chat that New chat goes back to rather than making another."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from chatbot.chat.titles import UNTITLED
from chatbot.stores.conversations import Conversation, Conversations

HEADINGS = ("Today", "Yesterday", "Previous 7 days", "Older")


@dataclass(frozen=True)
class Group:
    heading: str
    conversations: list[Conversation]


def heading_for(day: date, today: date) -> str:
    """The group a chat last active on `day` goes under when it is `today` (a day still to come: Today)."""
    days_ago = (today - day).days
    if days_ago <= 0:
        return "Today"
    if days_ago == 1:
        return "Yesterday"
    return "Previous 7 days" if days_ago <= 7 else "Older"


def grouped(conversations: list[Conversation], now: datetime) -> list[Group]:
    """The conversations under their headings (in HEADINGS' order, each keeping the order given), without empty
    groups. Days are the calendar days of `now`'s timezone (a naive `now`: the server's local time); the app
    passes the server's local time."""
    groups: dict[str, list[Conversation]] = {}
    for conversation in conversations:
        day = datetime.fromtimestamp(conversation.updated_at, now.tzinfo).date()
        groups.setdefault(heading_for(day, now.date()), []).append(conversation)
    return [Group(heading, groups[heading]) for heading in HEADINGS if heading in groups]


def empty_chat(store: Conversations, owner: str) -> Conversation | None:
    """The owner's newest chat with no message yet (still untitled: a renamed one is kept for what it was named),
    or None."""
    for conversation in store.list_conversations(owner):
        if conversation.title == UNTITLED and not store.messages(conversation):
            return conversation
    return None
