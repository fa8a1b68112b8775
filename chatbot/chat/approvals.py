"""A tool call of an MCP server with `"trust": "ask"` waits on a card for its owner's yes: Run once, Always for
this tool (kept per owner, revocable in Settings) or Deny; left unanswered for TOOL_APPROVAL_MINUTES, it is denied.

While it waits, the card is in the answer's meta ("approval": its id, the tool, the arguments, until when), saved
with the answer, so that every tab, worker and host shows it, a reloaded page too. Its answer is a record of the
store made once (`Records.create_record`): the first answer wins on every host, and a later one is told the card
was answered already; the writer takes the card the same way when it times out or Stop is pressed. Only the
owner's own request answers a card (a form post or the socket's action, on their own chat): nothing a model or a
tool says can.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatbot.chat import slots, tool_calls
from chatbot.chat.events import Event, Kind, Listener
from chatbot.chat.running import is_abandoned
from chatbot.services.protocols import ToolCall
from chatbot.services.tools import OfferedTool
from chatbot.stores.conversations import Conversation, Message, Records, Store

ANSWERS = "tool call answers"  # records: one per card answered, deleted once the writer has read it
ALLOWED = "tool always allowed"  # records: one per owner and tool, {"owner", "tool": "server.tool", "server"}
WAITING = "cards waiting"  # records: one per owner and slot, {"until": when its card is denied}
CARDS_PER_PERSON = 3  # answers of one person waiting on a card at once: each holds a writer's thread
ONCE, ALWAYS, DENY = "once", "always", "deny"  # what the owner may answer
TIMED_OUT, STOPPED = "timed out", "stopped"  # what the writer takes a card with
CHECK_SECONDS = 0.25  # how often a waiting answer looks for the card's answer, and for Stop
WAIT_PAST_SECONDS = 30.0  # the most a page without JavaScript waits for the answer to go on past its card
DECLINED = "The user declined this call."
LONG_VALUE_CHARS = 200  # a string argument longer than this has its length told under the card
TOO_MANY_WAITING = (
    f"Not asked: {CARDS_PER_PERSON} other answers of this user already wait for a yes on a card. Answer or stop "
    "one of them, then ask again."
)
STOPPED_WHILE_ASKING = "Not run: the user pressed Stop while it waited for a yes."


class NotWaiting(Exception):
    """The card was answered already (in another tab, on another host, or it timed out), or waits no more."""


@dataclass
class Waiting:
    """What a card's wait needs of the answer's writer: the store, the answer's conversation and message, its
    listener and Stop, how to keep the answer alive (saved whole as it is, meta included) and how often, and how
    long the card waits."""

    store: Store
    conversation: Conversation
    message: Message
    listener: Listener
    cancel: threading.Event
    keep_alive: Callable[[], None]
    heartbeat_seconds: float
    minutes: float


def tool_name(offered: OfferedTool) -> str:
    """The tool as the card and Settings name it: `server.tool`."""
    return f"{offered.server.name}.{offered.tool.name}"


def asked_first(waiting: Waiting, call: ToolCall, offered: OfferedTool | None) -> dict | None:
    """None when the call may be made: its server trusts the model, the owner allows the tool always, or the owner
    said yes on the card. Else the call's record, saying why it was not made (what the model is told)."""
    if offered is None or offered.server.trust != "ask":
        return None
    message, store, tool = waiting.message, waiting.store, tool_name(offered)
    if allowed_always(store, waiting.conversation.owner, offered):
        return None
    card_id, until = secrets.token_urlsafe(12), time.time() + waiting.minutes * 60
    if (slot := _claim_slot(store, waiting.conversation.owner, until)) is None:
        return tool_calls.denied(call, TOO_MANY_WAITING)
    card = {"id": card_id, "tool": tool_calls.visible(tool), "until": until, **shown_arguments(call.arguments)}
    message.meta["approval"] = card
    try:
        given = _answer(waiting, card_id, until)
    finally:
        store.delete_record(WAITING, slot)
        message.meta.pop("approval", None)
        waiting.keep_alive()
        waiting.listener(Event(Kind.ASKING, message))
    store.delete_record(ANSWERS, _key(message.id, card_id))
    if given == ALWAYS:
        allow_always(store, waiting.conversation.owner, offered)
    if given == STOPPED or waiting.cancel.is_set():  # a yes given as Stop was pressed does not make the call
        return tool_calls.not_run(call, STOPPED_WHILE_ASKING)
    if given in (ONCE, ALWAYS):
        return None
    if given == TIMED_OUT:
        minutes = f"{waiting.minutes:g} minute{'' if waiting.minutes == 1 else 's'}"
        return tool_calls.denied(call, f"The user did not answer within {minutes}, so this call was not made.")
    return tool_calls.denied(call, DECLINED)


def shown_arguments(arguments: str) -> dict:
    """The card's "arguments" as indented JSON with every invisible character shown as its escape (a right-to-left
    override reads "\\u202e", not reversing what follows), and "lengths": the length of each long string value."""
    try:
        lengths = [
            (tool_calls.visible(str(name)), len(value))
            for name, value in (json.loads(arguments or "{}") or {}).items()
            if isinstance(value, str) and len(value) > LONG_VALUE_CHARS
        ]
    except (ValueError, AttributeError):  # not JSON, or not an object
        lengths = []
    return {"arguments": tool_calls.visible(tool_calls.pretty(arguments), keep="\n"), "lengths": lengths}


def _claim_slot(store: Records, owner: str, until: float) -> str | None:
    """One of the owner's CARDS_PER_PERSON slots for a waiting card (its record's key), or None when all are
    held. A slot held past its card's deadline (its writer went away) is taken over."""
    return slots.claim(
        store, WAITING, owner, CARDS_PER_PERSON, {"until": until}, lambda held: held.get("until", 0) < time.time() - 60
    )


def _answer(waiting: Waiting, card_id: str, until: float) -> str:
    """Show the card and wait for its answer, keeping the answer alive; on Stop (or its chat deleted) or at its
    deadline, the writer takes the card itself (unless the owner's answer came first)."""
    store, message, cancel = waiting.store, waiting.message, waiting.cancel
    key = _key(message.id, card_id)
    waiting.keep_alive()  # the card is in the store before any tab shows it
    waiting.listener(Event(Kind.ASKING, message))
    last_beat = time.monotonic()
    while (given := _read(store, key)) is None:
        if store.stop_requested(message.id):
            cancel.set()
        if cancel.is_set() or time.time() >= until:
            store.create_record(ANSWERS, key, {"answer": STOPPED if cancel.is_set() else TIMED_OUT})
            continue  # whichever answer came first
        if time.monotonic() - last_beat >= waiting.heartbeat_seconds:
            if store.read_message(waiting.conversation, message.id, len(message.content)) is None:  # chat deleted
                cancel.set()
            waiting.keep_alive()
            last_beat = time.monotonic()
        cancel.wait(CHECK_SECONDS)
    return given


def answer(store: Store, conversation: Conversation, message_id: str, card_id: str, given: str) -> None:
    """The owner's answer (ONCE, ALWAYS or DENY) to the card `card_id` of the answer `message_id`, taken unless
    the card was answered already or waits no more (NotWaiting). ValueError for another answer."""
    if given not in (ONCE, ALWAYS, DENY):
        raise ValueError(f"a card takes {ONCE}, {ALWAYS} or {DENY}")
    message = store.read_message(conversation, message_id)
    card = message.meta.get("approval") if message is not None and message.status == "streaming" else None
    if card is None or card["id"] != card_id:
        raise NotWaiting
    if not store.create_record(ANSWERS, _key(message_id, card_id), {"answer": given}):
        raise NotWaiting


def wait_past(
    store: Store, conversation: Conversation, message_id: str, card_id: str, seconds: float = WAIT_PAST_SECONDS
) -> None:
    """Wait until the answer `message_id` has ended or waits on a card other than `card_id` (a page without
    JavaScript then shows how it went on), or `seconds` have passed (it then shows the answer still being written:
    a request does not hold its thread for the whole rest of a long answer)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = store.read_message(conversation, message_id)
        if message is None or message.status != "streaming" or is_abandoned(message):
            return
        card = message.meta.get("approval")
        if card is not None and card["id"] != card_id:
            return
        time.sleep(CHECK_SECONDS)


def always_allowed(store: Records, owner: str) -> list[str]:
    """The tools (`server.tool`) of "ask" servers the owner lets the model call without asking (Settings)."""
    return sorted(record["tool"] for record in store.records(ALLOWED) if record.get("owner") == owner)


def allowed_always(store: Records, owner: str, offered: OfferedTool) -> bool:
    """Whether the owner said Always for this tool of this very server: a server name given to another url or
    command since does not carry the yes."""
    record = store.load_record(ALLOWED, f"{owner} {tool_name(offered)}")
    return record is not None and record.get("server") == server_identity(offered)


def allow_always(store: Records, owner: str, offered: OfferedTool) -> None:
    """One record per owner and tool, saved whole: two Always at once cannot lose one another."""
    tool = tool_name(offered)
    store.save_record(ALLOWED, f"{owner} {tool}", {"owner": owner, "tool": tool, "server": server_identity(offered)})


def server_identity(offered: OfferedTool) -> str:
    """What the tool's server is, not what it is named: a hash of its transport and url, or of its command, args
    and folder (not its headers or env: a renewed key is the same server)."""
    server = offered.server
    what = [server.transport, server.url, server.command, list(server.args), server.cwd]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def revoke(store: Records, owner: str, tool: str) -> None:
    """The tool asks first again."""
    store.delete_record(ALLOWED, f"{owner} {tool}")


def _read(store: Records, key: str) -> str | None:
    return (store.load_record(ANSWERS, key) or {}).get("answer")


def _key(message_id: str, card_id: str) -> str:
    return f"{message_id} {card_id}"
