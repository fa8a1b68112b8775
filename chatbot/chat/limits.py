"""How much one browser session, and one address, may use the owner's token and store: answers a minute, new
chats and attached files an hour. Counted in the store, so every worker and host agrees; a setting of 0 means no
limit."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from dataclasses import dataclass, field

from chatbot.chat.attachments import megabytes
from chatbot.stores.conversations import Counters, Files

DAY = 86400


def _tokens_today(store: Counters, owner: str, adding: int = 0) -> int:
    """Add to the owner's tokens of today (UTC) and return them (adding 0: only read)."""
    return store.add_to_count(f"usage:tokens:{owner}", adding, DAY)


def _answers_today(store: Counters, owner: str, adding: int = 0) -> int:
    return store.add_to_count(f"usage:messages:{owner}", adding, DAY)


def _answers_this_minute(store: Counters, owner: str, adding: int = 0) -> int:
    """The owner's counter of answers that refusal() adds to, this minute."""
    return store.add_to_count(f"answers:session:{owner}", adding, LIMITS["answers"].window_seconds)


@dataclass(frozen=True)
class Limit:
    thing: str  # what is counted, in words: one of them
    things: str  # and several
    window_seconds: int
    window_words: str
    per_session: str  # the settings that hold the limits
    per_address: str
    again: str  # what to do when the window has passed


LIMITS = {
    "answers": Limit(
        "answer",
        "answers",
        60,
        "this minute",
        "MESSAGES_PER_MINUTE",
        "MESSAGES_PER_MINUTE_PER_ADDRESS",
        "your message is still in the box",
    ),
    "conversations": Limit(
        "new chat",
        "new chats",
        3600,
        "this hour",
        "CONVERSATIONS_PER_HOUR",
        "CONVERSATIONS_PER_HOUR_PER_ADDRESS",
        "meanwhile, carry on in one of your chats",
    ),
    "files": Limit(
        "attached file",
        "attached files",
        3600,
        "this hour",
        "FILES_PER_HOUR",
        "FILES_PER_HOUR_PER_ADDRESS",
        "meanwhile, send your message without it",
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


def refusal(
    store: Counters, config: dict, kind: str, owner: str, address: str | None, account_limits: dict | None = None
) -> str | None:
    """Count one use of `kind` ("answers", "conversations" or "files") by this owner (a browser session, or an
    account on every device) and address; the words to refuse it with when either has reached its limit, with
    when to try again. An account's limits are `account_limits` (what the admin set). None: go ahead."""
    limit = LIMITS[kind]
    per_owner = config[limit.per_session]
    if account_limits is not None and kind == "answers":
        if problem := _tokens_refusal(store, owner, account_limits["tokens_per_day"]):
            return problem
        per_owner = account_limits["messages_per_minute"]
    counted = Asker(owner, address, account_limits is not None, per_owner, config[limit.per_address])
    if problem := _counted(store, kind, counted, limit.again):
        return problem
    if kind == "answers":
        _answers_today(store, owner, 1)
    return None


@dataclass(frozen=True)
class Asker:
    """Who asks the model, as the answers a minute count them: the owner (`account`: an account, else a browser
    session) and the network address, and how many each may ask for a minute (0: no limit)."""

    owner: str
    address: str | None
    account: bool
    per_owner: int
    per_address: int


def asker(config: dict, owner: str, address: str | None, account_limits: dict | None = None) -> Asker:
    """The asker of an answer, with the limits refusal() counts its answers against."""
    per_owner = account_limits["messages_per_minute"] if account_limits is not None else config["MESSAGES_PER_MINUTE"]
    return Asker(owner, address, account_limits is not None, per_owner, config["MESSAGES_PER_MINUTE_PER_ADDRESS"])


def another_request(store: Counters, asker: Asker) -> str | None:
    """Count one more request of an answer to its model (a round after its tool calls) as an answer of this minute,
    so a model that loops through tools asks no more often than the limits let people; the words that end the
    answer when a limit is reached, None: go ahead."""
    return _counted(store, "answers", asker, "press Regenerate then, or send the message again")


def _counted(store: Counters, kind: str, asker: Asker, again: str) -> str | None:
    """Count one use of `kind` by the asker's owner and address; the words to refuse it with, and to do `again`,
    when either has reached its limit."""
    limit = LIMITS[kind]
    for who, allowed, key in (
        ("Your account has" if asker.account else "This browser has", asker.per_owner, f"session:{asker.owner}"),
        ("Your network address has", asker.per_address, f"address:{address_key(asker.address)}"),
    ):
        if allowed and store.add_to_count(f"{kind}:{key}", 1, limit.window_seconds) > allowed:
            ends, at = _window_end(limit.window_seconds)
            return (
                f"{who} asked for {allowed} {limit.thing if allowed == 1 else limit.things} {limit.window_words},"
                " the most this chat allows. "
                f"Try again in {max(1, round(ends - time.time()))} s (at {at}); {again}."
            )
    return None


def _window_end(window_seconds: int) -> tuple[float, str]:
    ends = (time.time() // window_seconds + 1) * window_seconds
    return ends, time.strftime("%H:%M UTC" if window_seconds >= 3600 else "%H:%M:%S UTC", time.gmtime(ends))


def _tokens_refusal(store: Counters, owner: str, allowed: int) -> str | None:
    if not allowed or _tokens_today(store, owner) < allowed:
        return None
    return f"{_used_up(allowed)}; your message is still in the box."


def _used_up(allowed: int, left: int = 0, prompt: int = 0) -> str:
    """The words for an account whose tokens of today are used up, or too few (`left`) for a prompt of `prompt`."""
    ends, at = _window_end(DAY)
    hours, minutes = divmod(round((ends - time.time()) / 60), 60)
    when = f"{at} (in {hours} h {minutes} min)"
    if left:
        return (
            f"Your account has {left:,} of its {allowed:,} tokens for today left, and this chat's history needs about"
            f" {prompt:,}: start a new chat, or wait until {when}"
        )
    return f"Your account has used its {allowed:,} tokens for today, the most this chat allows. More from {when}"


class TokensUsedUp(Exception):
    """An answer cannot start: its account has not enough tokens left today (the words say so)."""


@dataclass
class Reservation:
    """Tokens set aside in an owner's count of today for one answer, until it ends."""

    owner: str
    tokens: int
    max_new_tokens: int  # as many new tokens as were set aside: at most what the answer asked for
    day: int = field(default_factory=lambda: int(time.time() // DAY))


def reserve_tokens(store: Counters, owner: str, allowed: int, prompt: int, max_new_tokens: int) -> Reservation:
    """Set aside an answer's tokens (about `prompt` for the prompt and up to `max_new_tokens`) in the owner's count
    of today before it is asked for, in one step of the store, so that answers started at once on any host cannot
    pass `allowed` (0: no limit) together. With less left, fewer new tokens are set aside (the answer stops at
    that length, and can be continued tomorrow); TokensUsedUp when not even one is left."""
    wanted = prompt + max_new_tokens
    total = _tokens_today(store, owner, wanted)
    over = total - allowed if allowed else 0
    if over >= max_new_tokens:
        _tokens_today(store, owner, -wanted)
        left = max(0, wanted - over)
        raise TokensUsedUp(_used_up(allowed, left, prompt))
    if over > 0:
        _tokens_today(store, owner, -over)
        return Reservation(owner, wanted - over, max_new_tokens - over)
    return Reservation(owner, wanted, max_new_tokens)


def reserve_more(
    store: Counters, reservation: Reservation, allowed: int, prompt: int, max_new_tokens: int
) -> Reservation:
    """Set aside the tokens of one more request of the same answer (a round after its tool calls) as
    reserve_tokens does, added to `reservation` (settled together when the answer ends); TokensUsedUp when not
    even one is left."""
    more = reserve_tokens(store, reservation.owner, allowed, prompt, max_new_tokens)
    return dataclasses.replace(reservation, tokens=reservation.tokens + more.tokens, max_new_tokens=more.max_new_tokens)


def settle_tokens(store: Counters, reservation: Reservation, used: int) -> None:
    """Count what an answer used (the prompt's tokens too, where the server counts them) in place of what was
    set aside for it; past midnight (UTC) what was set aside stands for yesterday's."""
    if int(time.time() // DAY) == reservation.day:
        _tokens_today(store, reservation.owner, used - reservation.tokens)


def usage_today(store: Counters, owner: str) -> tuple[int, int]:
    """(answers, tokens) the owner asked for today (UTC)."""
    return _answers_today(store, owner), _tokens_today(store, owner)


def left(store: Counters, owner: str, account_limits: dict) -> str:
    """How much of an account's limits is left, for the page: shown before it is reached."""
    parts = []
    if per_minute := account_limits["messages_per_minute"]:
        used = _answers_this_minute(store, owner)
        parts.append(f"{max(0, per_minute - used)} of {per_minute} messages left this minute")
    if per_day := account_limits["tokens_per_day"]:
        used = _tokens_today(store, owner)
        parts.append(f"{max(0, per_day - used):,} of {per_day:,} tokens left today")
    return " · ".join(parts)


def keeping_problem(store: Files, owner: str, limit_mb: float, adding: int, then: str) -> str | None:
    """Why `adding` more bytes of files or share snapshots cannot be kept for `owner` (`limit_mb` in all their
    chats, FILES_KEPT_MB; 0: no limit), in words that end with what to do `then`; None when they can."""
    if not limit_mb or not adding:
        return None
    kept = store.kept_size(owner)
    if kept + adding <= limit_mb * 1024 * 1024:
        return None
    return (
        f"Your chats keep {megabytes(kept)} of attached files and shared snapshots, and with"
        f" {megabytes(adding)} more they would pass the {limit_mb:g} MB this chat keeps for each person."
        f" Delete chats, or revoke share links, that you no longer need, then {then}."
    )
