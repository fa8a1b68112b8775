"""Accounts, kept as records in the store: a username, a password hash (scrypt, by Werkzeug), admin or not,
active, waiting for approval or disabled, and the ids of the sessions signed in to it.

A browser's session holds the username and one of those ids; the account's record is read on every request,
so ending a session, every session, or disabling the account takes effect at once on every worker and host.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, field

from werkzeug.security import check_password_hash, generate_password_hash

from chatbot.stores.conversations import Records

KIND = "account"
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
PASSWORD_LENGTHS = (10, 1024)  # at least 10 characters; at most 1 KiB, so hashing one costs the same for all
SIGNUPS = ("approval", "invitation")  # how later accounts are let in: an admin approves them, or an invitation
INVITATION_SECONDS = 7 * 86400
MAX_SESSIONS = 50  # browsers and devices signed in to one account at once
# Checked when the username is unknown, so that a wrong name takes as long as a wrong password.
_UNKNOWN = generate_password_hash(secrets.token_urlsafe(16))


@dataclass
class Account:
    username: str
    password_hash: str = ""  # empty for an account a trusted proxy signs in
    admin: bool = False
    status: str = "pending"  # "active", "pending" (waits for an admin) or "disabled"
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> when it signed in
    models: list[str] = field(default_factory=list)  # the models it may pick (the admin's choice); empty: all
    tool_servers: list[str] | None = None  # the MCP servers whose tools it may use (the admin's choice); None: all
    created_at: float = field(default_factory=time.time)

    @property
    def owner(self) -> str:
        """Whom the store keeps the account's conversations under."""
        return f"account:{self.username}"


class SignUpProblem(ValueError):
    """Why an account cannot be made, in words for the person."""


class NameTaken(SignUpProblem):
    """The name is someone's account."""


def normalized(username: str) -> str:
    """A username as it is kept: no spaces around it, lowercase."""
    return username.strip().lower()


def username_problem(username: str) -> str | None:
    if not USERNAME.fullmatch(username):
        return "A username is 1 to 64 lowercase letters, digits and . _ @ + - (starting with a letter or digit)."
    return None


def password_problem(password: str) -> str | None:
    low, high = PASSWORD_LENGTHS
    if not low <= len(password) <= high:
        return f"A password has {low} to {high} characters."
    return None


def load(store: Records, username: str) -> Account | None:
    data = store.load_record(KIND, username)
    return Account(**data) if data else None


def save(store: Records, account: Account) -> None:
    store.save_record(KIND, account.username, asdict(account))


def everyone(store: Records) -> list[Account]:
    return sorted((Account(**data) for data in store.records(KIND)), key=lambda account: account.created_at)


def none_yet(store: Records) -> bool:
    """Whether no account was made yet (nor an admin, in a store emptied since): the first visitor signs up."""
    return no_admin_yet(store) and not store.records(KIND)


def waiting(store: Records) -> int:
    """How many accounts wait for an admin's approval."""
    return sum(data["status"] == "pending" for data in store.records(KIND))


def last_admin_problem(store: Records, account: Account) -> str | None:
    """Why the account may not stop being an active admin (disabled, or no longer an admin): it is the only one,
    and nobody would be left to let anyone in. None when another active admin remains."""
    if not (account.admin and account.status == "active"):
        return None
    others = (other for other in everyone(store) if other.username != account.username)
    if any(other.admin and other.status == "active" for other in others):
        return None
    return f"{account.username} is the only active admin; make another admin first."


def create(
    store: Records,
    username: str,
    password: str | None,
    status: str = "pending",
    admin: bool = False,
    first: bool = False,
) -> Account:
    """Make an account (with no password: signed in by a provider or a trusted proxy); an admin is active at once.
    `first`: the first admin there is becomes this one (one wins, however many at once). SignUpProblem when the
    name or password will not do, or the name is taken."""
    username = normalized(username)
    check_new(store, username, password, taken=False)
    account = Account(username, generate_password_hash(password) if password else "", status=status)
    if admin:
        make_admin(account)
    if not store.create_record(KIND, username, asdict(account)):
        raise NameTaken("That username is taken: choose another.")
    if (admin or first) and store.create_record("site", "first-account", {"username": username}) and first:
        make_admin(account)
        save(store, account)
    return account


def no_admin_yet(store: Records) -> bool:
    """Whether no admin was ever made in this store (an emptied store has none)."""
    return store.load_record("site", "first-account") is None


def make_admin(account: Account) -> None:
    """The account is an active admin (save it to make it so)."""
    account.admin, account.status = True, "active"


def setup_code(store: Records) -> tuple[str, bool]:
    """The one-time code with which an admin signs up on a chat reachable from elsewhere, and whether it was made
    now (then whoever runs the chat must be shown it)."""
    kept = store.load_record("site", "setup-code")
    if kept:
        return kept["code"], False
    code = "-".join(secrets.token_hex(2).upper() for _ in range(3))
    if store.create_record("site", "setup-code", {"code": code}):
        return code, True
    return setup_code(store)  # made meanwhile by another worker


def use_setup_code(store: Records, given: str) -> bool:
    """Whether `given` is the setup code and this is its one use (of any number at once)."""
    kept = store.load_record("site", "setup-code")
    if not kept or not hmac.compare_digest(given.strip().upper().encode(), kept["code"].encode()):
        return False
    if not store.create_record("setup-code-used", kept["code"], {}):
        return False
    store.delete_record("site", "setup-code")
    return True


def check_new(store: Records, username: str, password: str | None, taken: bool = True) -> None:
    """SignUpProblem when the name or password will not do (or, with `taken`, the name is someone's)."""
    problem = username_problem(username) or (password_problem(password) if password is not None else None)
    if problem:
        raise SignUpProblem(problem)
    if taken and load(store, username) is not None:
        raise NameTaken("That username is taken: choose another.")


def asked_for_taken_name(store: Records, username: str, password: str) -> None:
    """Someone asked for a new account with a name that is taken: take as long as making it would (its hash),
    and keep a notice for the name's owner, shown at their next sign-in."""
    generate_password_hash(password)
    store.save_record("asked-for-name", username, {"at": time.time()})


def notice_for_owner(store: Records, username: str) -> str:
    """What the owner is told once about new accounts asked for with their name; empty when nothing was."""
    asked = store.load_record("asked-for-name", username)
    if not asked:
        return ""
    store.delete_record("asked-for-name", username)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(asked["at"]))
    return f"Someone asked for a new account named {username} ({when}, the latest time): yours is unchanged."


def set_password(account: Account, password: str) -> None:
    """A new password for the account; every session of it ends (save the account to make both so)."""
    account.password_hash, account.sessions = generate_password_hash(password), {}


def check_password(store: Records, username: str, password: str) -> Account | None:
    """The account, when the password is its own; None otherwise (an unknown name takes as long)."""
    account = load(store, normalized(username))
    if account is None or not account.password_hash:
        check_password_hash(_UNKNOWN, password)
        return None
    return account if check_password_hash(account.password_hash, password) else None


def start_session(store: Records, account: Account) -> str | None:
    """A new session id for the account (kept in its record and in the browser's cookie). Written into the
    record as it is now, so an admin's change made while the password was checked is kept; None when that
    change disabled the account or replaced its password."""
    current = load(store, account.username)
    if current is None or current.status != "active" or current.password_hash != account.password_hash:
        return None
    session_id = secrets.token_urlsafe(24)
    current.sessions[session_id] = time.time()
    newest = sorted(current.sessions.items(), key=lambda item: item[1])[-MAX_SESSIONS:]
    current.sessions = dict(newest)  # the oldest sign-in ends first, so the record stays small
    save(store, current)
    return session_id


def signed_in(store: Records, username: str, session_id: str) -> Account | None:
    """The account whose session this is, while it is active and the session has not ended."""
    account = load(store, username)
    if account is None or account.status != "active" or session_id not in account.sessions:
        return None
    return account


def end_sessions(store: Records, account: Account, only: str | None = None) -> None:
    """End one session of the account, or (only=None) all of them."""
    current = load(store, account.username) or account
    current.sessions = {} if only is None else {k: v for k, v in current.sessions.items() if k != only}
    save(store, current)


def invite(store: Records) -> str:
    """A new invitation's token: whoever opens its link within a week may make an active account, once."""
    token = secrets.token_urlsafe(24)
    store.save_record("invitation", token, {"token": token, "expires_at": time.time() + INVITATION_SECONDS})
    return token


def invitation_valid(store: Records, token: str) -> bool:
    invitation = store.load_record("invitation", token)
    return invitation is not None and invitation["expires_at"] > time.time()


def use_invitation(store: Records, token: str) -> bool:
    """Whether the invitation is good and this is its one use (of any number at once)."""
    if not invitation_valid(store, token) or not store.create_record("invitation-used", token, {}):
        return False
    store.delete_record("invitation", token)
    return True


def site_settings(store: Records, config: dict) -> dict:
    """What the admin set for accounts (chatbot/web/admin.py): how they get in, their limits; the configuration's
    values until then."""
    defaults = {
        "signups": SIGNUPS[0],
        "messages_per_minute": config["MESSAGES_PER_MINUTE"],
        "tokens_per_day": config["TOKENS_PER_DAY"],
    }
    return {**defaults, **(store.load_record("site", "settings") or {})}


def save_site_settings(store: Records, settings: dict) -> None:
    store.save_record("site", "settings", settings)
