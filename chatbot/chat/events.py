"""What happens to an answer while it is written, told to a listener (a socket, a page that waits, a test)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from chatbot.chat.branches import Tree
from chatbot.stores.conversations import Message


class Kind(enum.StrEnum):
    """The kinds of `Event`, in the order an answer meets them."""

    STARTED = "started"  # the answer was saved, empty (with its question, or beside an earlier answer)
    RESUMED = "resumed"  # an answer cut off at the length limit goes on
    WAITING = "waiting"  # the model is loading (text: how long, in words)
    CALLING = "calling"  # a tool call started, or ended (message.meta "tool_calls", each at its place)
    ASKING = "asking"  # a tool call waits for the user's yes on a card, or no more (message.meta "approval")
    REASONING = "reasoning"  # more of its thinking (text)
    REASONED = "reasoned"  # the thinking ended (text: how long it took, in words)
    DELTA = "delta"  # more of the answer's text (text)
    FINISHED = "finished"  # whole, stopped or failed: the message says which
    TITLED = "titled"  # after a first answer, the model titled the chat (text: the title)


@dataclass
class Event:
    """What happened to an answer (`message`), with the text the kind carries."""

    kind: Kind
    message: Message
    text: str = ""
    user_message: Message | None = None
    tree: Tree | None = None  # STARTED beside earlier messages (an edit, a regeneration): all of them, to show anew
    so_far: Callable[[], str] | None = None  # text events: the answer's whole content up to and with this event


Listener = Callable[[Event], None]
