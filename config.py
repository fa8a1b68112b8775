"""Every setting of the chat, read from the environment, typed and validated.

`load_config(environ)` returns a dict for `app.config`. A bad value raises
`ConfigError` with one line that names the variable and what it takes. MODELS
is kept as written here; `chatbot/services/models.py` reads it into the models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

INFERENCE_APIS = ("text-generation", "chat", "completions")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting that the chat cannot start with; str() is one line for the user."""


def _text(raw: str) -> str:
    return raw


def _boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("true or false")


def _ranged(convert: Callable[[str], Any], words: str, low: float, high: float) -> Callable[[str], Any]:
    """A parser for numbers from `low` to `high`; `words` names the kind of number in the error."""
    takes = f"{words} from {low:g} to {high:g}"

    def parse(raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(takes) from None
        if not low <= value <= high:
            raise ValueError(takes)
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    return _ranged(float, "a number", low, high)


def _whole(low: int, high: int) -> Callable[[str], int]:
    return _ranged(int, "a whole number", low, high)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return parse


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value


def _store_url(raw: str) -> str:
    value = raw.strip()
    schemes = ("sqlite:///", "postgresql://", "postgres://", "redis://", "rediss://", "unix://")
    if not value.startswith(schemes) and value != "memory://":
        raise ValueError(
            "sqlite:////absolute/path.db, postgresql://user@host/database, redis://host:6379/0, or memory:// (kept "
            "in one process)"
        )
    return value


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def _lowercase_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if any("/" in host or ":" in host.strip("[]").replace("::", "") for host in hosts):
        raise ValueError("host names without scheme or port, comma-separated (chat.example.com, .example.org)")
    return hosts


# variable -> (parser, default); the config key is the variable's name. None: not set.
SETTINGS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "HF_API_TOKEN": (_text, None),
    "MODEL_ID": (_text, "google/gemma-7b-it"),
    "INFERENCE_API": (_choice(*INFERENCE_APIS), None),  # None: what the URL speaks (api_for_url)
    "API_URL": (_url, None),
    "MODELS": (_text, None),
    "CONTEXT_LENGTH": (_whole(16, 10_000_000), None),
    "MAX_NEW_TOKENS": (_whole(1, 32768), 250),
    "TEMPERATURE": (_number(0.0, 5.0), 0.7),
    "TOP_P": (_number(0.0, 1.0), 0.9),
    "DO_SAMPLE": (_boolean, True),
    "REASONING_EFFORT": (_choice("none", "low", "medium", "high"), None),  # None: the server's own default
    "WAIT_FOR_MODEL": (_boolean, True),
    "MAX_LOADING_WAIT": (_number(0, 3600), 300.0),
    "SYSTEM_PROMPT": (_text, ""),
    "MODEL_TITLES": (_boolean, True),  # after a chat's first answer the model titles it (MODELS: "titles" per model)
    "CONNECT_TIMEOUT": (_number(0.1, 600), 10.0),
    "READ_TIMEOUT": (_number(0.1, 3600), 120.0),
    "SECRET_KEY": (_text, None),
    "CHAT_STORE_URL": (_store_url, None),
    # "accept": start on a Redis that keeps nothing on disk (tests, a chat you can lose); else start-up stops.
    "REDIS_KEEPS_NOTHING": (_choice("accept"), None),
    "MAX_MESSAGE_CHARS": (_whole(1, 1_000_000), 20_000),
    # Files attached to a message (chatbot/chat/attachments.py): size of each, how many, text of each, pages of a PDF.
    "ATTACHMENT_MAX_MB": (_number(0.01, 100), 5.0),
    "MAX_ATTACHMENTS": (_whole(0, 20), 4),  # 0: nothing can be attached
    "ATTACHMENT_MAX_CHARS": (_whole(100, 10_000_000), 100_000),
    "ATTACHMENT_MAX_PAGES": (_whole(1, 10_000), 50),
    "FILES_KEPT_MB": (_number(0, 1_000_000), 200.0),  # what one person's chats keep of files and shared snapshots
    "SHARE_LINKS_PER_CHAT": (_whole(0, 100_000), 10),  # share links a chat may have at once; 0: no limit
    "SHARE_LINKS_PER_PERSON": (_whole(0, 1_000_000), 100),  # in all of one person's chats
    "ALLOWED_ORIGINS": (_origins, ()),
    "ALLOWED_HOSTS": (_hosts, ()),  # the names the chat answers to besides the loopback ones
    "CHAT_BIND": (_origins, ()),  # where gunicorn listens: set by gunicorn.conf.py for the workers
    "PROXY_COUNT": (_whole(0, 10), 0),
    # Who may chat: none (anyone who reaches it), local (accounts kept by the chat), header (a trusted proxy's
    # sign-in, in AUTH_HEADER), oidc (an OpenID Connect provider). Unset: none on 127.0.0.1; reachable from
    # elsewhere, the chat will not start.
    "AUTH": (_choice("none", "local", "oidc", "header"), None),
    # AUTH=oidc: the provider (its issuer URL, this chat's client id and secret there) and who may enter.
    "OIDC_ISSUER": (_url, None),
    "OIDC_CLIENT_ID": (_text, None),
    "OIDC_CLIENT_SECRET": (_text, None),
    "OIDC_NAME": (_text, "your sign-in provider"),  # as the sign-in button says: "Sign in with Hugging Face"
    "OIDC_ALLOWED_EMAILS": (_lowercase_list, ()),
    "OIDC_ALLOWED_DOMAINS": (_lowercase_list, ()),
    # true: an address the provider does not say is verified counts (only for providers that verify every one)
    "OIDC_TRUST_UNVERIFIED_EMAIL": (_boolean, False),
    # Who is an admin: usernames (AUTH=local, AUTH=header) or e-mail addresses (AUTH=oidc), when they sign in.
    # None: the first account on a chat only this machine reaches; reachable from elsewhere, with the setup code.
    "ADMINS": (_lowercase_list, ()),
    "AUTH_HEADER": (_text, "X-Forwarded-User"),
    "TRUSTED_PROXY_ADDRESSES": (_origins, ("127.0.0.1", "::1")),  # AUTH_HEADER is believed only from these
    "TOKENS_PER_DAY": (_whole(0, 1_000_000_000), 100_000),  # per account; the admin page can change it
    "SESSION_IDLE_DAYS": (_number(0.001, 3650), 30.0),
    # Open chat sockets (chatbot/web/open_sockets.py), in each worker; SOCKETS_PER_WORKER is set by gunicorn.conf.py.
    "SOCKETS_PER_WORKER": (_whole(1, 1_000_000), None),
    "SOCKETS_PER_SESSION": (_whole(0, 1_000_000), 8),
    "SOCKETS_PER_ADDRESS": (_whole(0, 1_000_000), 24),
    "SOCKET_IDLE_MINUTES": (_number(0.01, 1440), 10.0),
    # What one browser session, and one network address, may ask for (chatbot/chat/limits.py); 0: no limit.
    "MESSAGES_PER_MINUTE": (_whole(0, 100_000), 20),
    "MESSAGES_PER_MINUTE_PER_ADDRESS": (_whole(0, 100_000), 60),
    "CONVERSATIONS_PER_HOUR": (_whole(0, 1_000_000), 60),
    "CONVERSATIONS_PER_HOUR_PER_ADDRESS": (_whole(0, 1_000_000), 300),
    "FILES_PER_HOUR": (_whole(0, 1_000_000), 100),
    "FILES_PER_HOUR_PER_ADDRESS": (_whole(0, 1_000_000), 500),
    # Answers being written at once, in all of one person's chats (chatbot/chat/answers_at_once.py); 0: no limit.
    "MAX_ANSWERS_AT_ONCE": (_whole(0, 1000), 3),
    "MAX_ANSWERS_AT_ONCE_PER_ADDRESS": (_whole(0, 100_000), 12),
    # Tools through MCP servers (chatbot/services/mcp_client.py): chat-ui's JSON list, and/or an mcp.json file.
    "MCP_SERVERS": (_text, None),
    "MCP_CONFIG": (_text, None),
    "TOOL_ROUNDS": (_whole(0, 100), 8),  # rounds of tool calls per answer; then it answers without tools
    "TOOL_TIMEOUT_S": (_number(0.1, 3600), 60.0),  # the deadline of one tool call
    "TOOL_TIME_BUDGET_S": (_number(0.1, 86400), 300.0),  # the time all the tool calls of one answer may run
    "TOOL_RESULT_MAX_CHARS": (_whole(100, 10_000_000), 20_000),  # what the model is shown of one result
    "TOOL_APPROVAL_MINUTES": (_number(0.001, 60), 10.0),  # unanswered, denied; each waiting card holds a thread
    "LOCAL_MODEL_STATUS": (_text, None),  # set by `flask serve` for the built-in model: its supervisor's file
}
PARAMETERS = {
    "max_new_tokens": "MAX_NEW_TOKENS",
    "temperature": "TEMPERATURE",
    "top_p": "TOP_P",
    "do_sample": "DO_SAMPLE",
    "reasoning_effort": "REASONING_EFFORT",
}


def _token(environ: Mapping[str, str]) -> str | None:
    token = (environ.get("HF_API_TOKEN") or environ.get("HF_TOKEN") or "").strip()
    return token or None


def load_config(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read every setting from `environ` (default: os.environ); `overrides` (typed values) win."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for variable, (parse, default) in SETTINGS.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            config[variable] = default
            continue
        try:
            config[variable] = parse(raw)
        except ValueError as error:
            raise ConfigError(f"{variable}={raw!r} is not valid: it takes {error}.") from None
    config["HF_API_TOKEN"] = _token(environ)
    config["MODEL_ID"] = config["MODEL_ID"].strip()
    config.update(overrides or {})
    if config["PROXY_COUNT"] and not config["ALLOWED_HOSTS"]:
        raise ConfigError(
            f"PROXY_COUNT={config['PROXY_COUNT']} puts the chat behind a proxy: set ALLOWED_HOSTS to the public "
            "name(s) it serves, for example ALLOWED_HOSTS=chat.example.com (requests for any other name get 400)."
        )
    config["OPEN_TO_ANYONE"] = _who_may_chat(config)
    return config


def bound_to_loopback(binds: tuple[str, ...]) -> bool:
    """Whether every address gunicorn listens on is this machine's own (none known: the tests, `flask run`)."""
    hosts = [address.rsplit(":", 1)[0].strip("[]") for address in binds]
    return all(host in ("localhost", "::1") or host.startswith("127.") for host in hosts)


def _who_may_chat(config: dict[str, Any]) -> bool:
    """Set AUTH when it is not set, or stop: never open to others by accident; REACHABLE: whether other machines
    reach the chat. Whether it is open to anyone who can reach it from another machine (the page then says so)."""
    reachable = config["PROXY_COUNT"] > 0 or not bound_to_loopback(config["CHAT_BIND"])
    config["REACHABLE"] = reachable
    if config["AUTH"] is None and reachable:
        where = "behind a proxy" if config["PROXY_COUNT"] else f"on {', '.join(config['CHAT_BIND'])}"
        raise ConfigError(
            f"The chat is reachable from other machines ({where}) and has no sign-in: set AUTH=local (accounts), "
            "AUTH=header (your proxy signs people in), or AUTH=none to leave it open to anyone who reaches it."
        )
    config["AUTH"] = config["AUTH"] or "none"
    if config["AUTH"] == "oidc":
        missing = [name for name in ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET") if not config[name]]
        if missing:
            raise ConfigError(f"AUTH=oidc needs {', '.join(missing)} (from your provider's settings for this chat).")
        if not config["OIDC_ALLOWED_EMAILS"] and not config["OIDC_ALLOWED_DOMAINS"]:
            raise ConfigError(
                "AUTH=oidc needs OIDC_ALLOWED_EMAILS or OIDC_ALLOWED_DOMAINS: otherwise everyone with an account at "
                "the provider could chat on your token."
            )
    return config["AUTH"] == "none" and reachable
