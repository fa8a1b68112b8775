"""Every setting of the chat, read from the environment, typed and validated.

`load_config(environ)` returns a dict for `app.config`. A bad value raises
`ConfigError` with one line that names the variable and what it takes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

INFERENCE_APIS = ("text-generation", "chat")
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


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"a number from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value

    return parse


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
    if not value.startswith("sqlite:///"):
        raise ValueError("sqlite:////absolute/path.db")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


# variable -> (config key, parser, default). None as default: not set.
SETTINGS: dict[str, tuple[str, Callable[[str], Any], Any]] = {
    "HF_API_TOKEN": ("HF_API_TOKEN", _text, None),
    "MODEL_ID": ("MODEL_ID", _text, "google/gemma-7b-it"),
    "INFERENCE_API": ("INFERENCE_API", _choice(*INFERENCE_APIS), "text-generation"),
    "API_URL": ("API_URL", _url, None),
    "MAX_NEW_TOKENS": ("MAX_NEW_TOKENS", _whole(1, 32768), 250),
    "TEMPERATURE": ("TEMPERATURE", _number(0.0, 5.0), 0.7),
    "TOP_P": ("TOP_P", _number(0.0, 1.0), 0.9),
    "DO_SAMPLE": ("DO_SAMPLE", _boolean, True),
    "WAIT_FOR_MODEL": ("WAIT_FOR_MODEL", _boolean, True),
    "SYSTEM_PROMPT": ("SYSTEM_PROMPT", _text, ""),
    "CONNECT_TIMEOUT": ("CONNECT_TIMEOUT", _number(0.1, 600), 10.0),
    "READ_TIMEOUT": ("READ_TIMEOUT", _number(0.1, 3600), 120.0),
    "SECRET_KEY": ("SECRET_KEY", _text, None),
    "CHAT_STORE_URL": ("CHAT_STORE_URL", _store_url, None),
    "MAX_MESSAGE_CHARS": ("MAX_MESSAGE_CHARS", _whole(1, 1_000_000), 20_000),
    "ALLOWED_ORIGINS": ("ALLOWED_ORIGINS", _origins, ()),
}


def _token(environ: Mapping[str, str]) -> str | None:
    token = (environ.get("HF_API_TOKEN") or environ.get("HF_TOKEN") or "").strip()
    return token or None


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `environ` (default: os.environ)."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for variable, (key, parse, default) in SETTINGS.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            config[key] = default
            continue
        try:
            config[key] = parse(raw)
        except ValueError as error:
            raise ConfigError(f"{variable}={raw!r} is not valid: it takes {error}.") from None
    config["HF_API_TOKEN"] = _token(environ)
    config["MODEL_ID"] = config["MODEL_ID"].strip()
    return config
