"""How much one browser session, and one address, may use the owner's token: answers a minute and new chats an
hour. Counted in the store, so every worker and host agrees; a setting of 0 means no limit."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from chatbot.conversations import Store


@dataclass(frozen=True)
class Limit:
    things: str  # what is counted, in words
    window_seconds: int
    window_words: str
    per_session: str  # the settings that hold the limits
    per_address: str
    again: str  # what to do when the window has passed


LIMITS = {
    "answers": Limit(
        "answers",
        60,
        "this minute",
        "MESSAGES_PER_MINUTE",
        "MESSAGES_PER_MINUTE_PER_ADDRESS",
        "your message is still in the box",
    ),
    "conversations": Limit(
        "new chats",
        3600,
        "this hour",
        "CONVERSATIONS_PER_HOUR",
        "CONVERSATIONS_PER_HOUR_PER_ADDRESS",
        "meanwhile, carry on in one of your chats",
    ),
}


def address_key(address: str | None) -> str:
    """Whom an address stands for: itself, or for IPv6 its /64 (one home or host gets a whole /64)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped or ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def refusal(store: Store, config: dict, kind: str, owner: str, address: str | None) -> str | None:
    """Count one use of `kind` ("answers" or "conversations") by this session and address; the words to refuse
    it with when either has reached its limit, with when to try again. None: go ahead."""
    limit = LIMITS[kind]
    for who, setting, key in (
        ("This browser has", limit.per_session, f"session:{owner}"),
        ("Your network address has", limit.per_address, f"address:{address_key(address)}"),
    ):
        allowed = config[setting]
        if allowed and store.add_to_count(f"{kind}:{key}", 1, limit.window_seconds) > allowed:
            ends = (time.time() // limit.window_seconds + 1) * limit.window_seconds
            at = time.strftime("%H:%M:%S UTC", time.gmtime(ends))
            return (
                f"{who} asked for {allowed} {limit.things} {limit.window_words}, the most this chat allows. "
                f"Try again in {max(1, round(ends - time.time()))} s (at {at}); {limit.again}."
            )
    return None
