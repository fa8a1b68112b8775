"""The answer being written in a conversation: one at a time, on whichever branch; one whose writer went away
(its server or worker stopped) is settled, with what arrived kept."""

from __future__ import annotations

import time

from chatbot.chat import reasoning, tool_call_places
from chatbot.services.errors import InferenceError
from chatbot.stores.conversations import Conversation, Message, Store

STALE_SECONDS = 30.0  # a streaming answer not saved for this long was interrupted (its server went away)
WAIT = "Wait for the answer to finish, or press Stop."  # said when an answer is asked for while one is written


class AnswerRunning(Exception):
    """The conversation is being answered already, in this tab, another one, or on another worker."""


def running_answer(messages: list[Message]) -> Message | None:
    """The conversation's answer being written, on whichever branch (one at a time)."""
    return next((m for m in reversed(messages) if m.status == "streaming"), None)


def start_answer(store: Store, conversation: Conversation, messages: list[Message]) -> Message:
    """Save `messages` (the new answer last) in one step that no other answer can start during; an answer
    whose writer went away does not block it. AnswerRunning when one is being written."""
    for _ in range(2):
        if store.start_answer(conversation, messages):
            return messages[-1]
        running = running_answer(store.messages(conversation))
        if running is not None and not settle_abandoned(store, running):
            break
    raise AnswerRunning


def is_abandoned(message: Message) -> bool:
    """Whether an answer still marked streaming has not been saved for STALE_SECONDS: its writer went away."""
    saved_at = message.meta.get("saved_at") or message.created_at
    return message.status == "streaming" and time.time() - saved_at >= STALE_SECONDS


def settle_abandoned(store: Store, message: Message) -> bool:
    """Keep what arrived of an abandoned answer (whole, as read), mark it interrupted and say so. True when it did."""
    if not is_abandoned(message):
        return False
    interrupt(message)
    store.update_message(message)
    return True


def interrupt(message: Message) -> None:
    """Mark an answer that nothing writes any more interrupted, with what arrived (whole, as read), and say so."""
    message.status = "error"
    message.error = InferenceError(
        "interrupted",
        "The answer was interrupted: the server stopped while writing it.",
        "What arrived is kept above; press Regenerate for a whole answer.",
    ).as_dict()
    message.meta.pop("approval", None)  # a tool call's card (chat/approvals.py): nothing waits on it any more
    reasoning.settle(message)
    tool_call_places.settle(message, message.content)
