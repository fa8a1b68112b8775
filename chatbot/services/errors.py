"""Every way an answer can fail, as one InferenceError with plain words and what to do.

The hint is written for whoever runs the chat (it may name `.env`); a person who cannot change the chat's
configuration reads `hint_for`'s words instead: what they can do (send again, pick another model, ask the admin).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

TOKEN_HINT = (
    "Put your token in .env as HF_API_TOKEN=hf_... (create one with read access at "
    "https://huggingface.co/settings/tokens), then restart the chat."
)
CREDITS_WORDS = ("NOT_ENOUGH_BALANCE", "exceeded your monthly included credits", "insufficient credits")
TOO_LONG_WORDS = ("must be <=", "exceed_context_size", "context size", "context length", "context window", "too long")
WINDOW_SAID = re.compile(  # how servers name the window in that refusal, when they do
    r"maximum context length is (\d+)"  # llama-cpp-python's server, vLLM (and OpenAI's words)
    r"|exceed context window of (\d+)"  # llama-cpp-python's own, when a server passes it on
    r"|available context size \((\d+) tokens\)"  # llama.cpp
    r"|tokens \+ `max_new_tokens` must be <= (\d+)"  # TGI
)
RUNNING_THE_CHAT = re.compile(r"\.env\b|`make |\bMODELS\b")  # a hint that only whoever runs the chat can follow
ASK_THE_ADMIN = "Send again in a moment, or pick another model; if it keeps failing, tell the admin."
FOR_USERS = {  # what a person who does not run the chat can do, by kind of failure
    "credits": (
        "The chat's Hugging Face account has no credits left for this model: pick another model (a local one"
        " costs nothing), or ask the admin to add credits."
    ),
    "auth": "The chat's model server did not accept the chat's key: pick another model, and tell the admin.",
    "not_found": "This model is not served now: pick another model, or ask the admin to offer one that is.",
    "bad_request": "The model server refused this model's settings: pick another model, and tell the admin.",
    "timeout": "The model may be slow or busy: send again, or pick a smaller model.",
    "too_long": "Start a new chat, or lower Max new tokens in Settings.",
    "empty": "Send again or rephrase; if it keeps happening, pick another model.",
}
CONTEXT_LENGTH_HINT = (
    "set its context window, so that the chat drops the oldest turns to fit: context_length for {model} in MODELS,"
    " or CONTEXT_LENGTH in .env when it is MODEL_ID"
)


class InferenceError(Exception):
    """A failed answer: `kind` for code, `message` and `hint` for the person."""

    def __init__(
        self,
        kind: str,
        message: str,
        hint: str,
        *,
        url: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        context_length: int | None = None,
        user_hint: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.user_hint = user_hint  # for a person who cannot change the configuration, when the hint is not
        self.url = url
        self.status = status
        self.retry_after = retry_after
        self.context_length = context_length  # a too long prompt: the context window the server said it has

    def as_dict(self) -> dict[str, Any]:
        kept = {"kind": self.kind, "message": self.message, "hint": self.hint, "retry_after": self.retry_after}
        return {**kept, "user_hint": self.user_hint} if self.user_hint else kept

    @classmethod
    def unreachable(cls, url: str, error: Exception) -> InferenceError:
        reason = _short_reason(error)
        return cls(
            "unreachable",
            f"Could not reach {public_url(url)}: {reason}.",
            "Check that the model server is running and that API_URL in .env points at it.",
            url=url,
        )

    @classmethod
    def timeout(cls, url: str, seconds: float, variable: str, reading: bool = False) -> InferenceError:
        what = "stopped sending the answer for" if reading else "did not answer within"
        return cls(
            "timeout",
            f"The server at {public_url(url)} {what} {seconds:g} s.",
            "The model may be slow or the server overloaded: send again, use a smaller model, "
            f"or raise {variable} in .env.",
            url=url,
        )

    @classmethod
    def truncated(
        cls, url: str, detail: str, hint: str = "Send your message again; what arrived is kept above."
    ) -> InferenceError:
        return cls("truncated", f"The answer from {public_url(url)} was cut off: {detail}.", hint, url=url)

    @classmethod
    def malformed(cls, url: str, text: str) -> InferenceError:
        return cls(
            "malformed",
            f"The server at {public_url(url)} sent something that is not a model answer: {_snippet(text)}",
            "Check that API_URL and INFERENCE_API (text-generation or chat) match the server.",
            url=url,
        )

    @classmethod
    def overlong(cls, url: str, sent: str) -> InferenceError:
        """A stream that went on past what an answer may say (`sent`: "more than 256,000 characters")."""
        return cls(
            "overlong",
            f"The server at {public_url(url)} sent {sent} for this answer, far more than its max new tokens"
            " allow, so the chat stopped reading there; what came before is kept.",
            "The model server does not keep to the max_tokens it is sent, or streams without end: check it or its"
            " provider, or point API_URL (or the model's url in MODELS) at another.",
            url=url,
            user_hint=(
                "The model's server sent far more than an answer may have: pick another model, and tell the admin."
            ),
        )

    @classmethod
    def in_stream(cls, message: str, url: str, error_type: str | None) -> InferenceError:
        if error_type == "incomplete_generation_stream":
            return cls.truncated(url, message)
        return cls(
            "generation",
            f"The model failed while answering: {message}",
            "Send your message again; if it keeps failing, try another model.",
            url=url,
        )

    @classmethod
    def cooling_down(cls, url: str, seconds: float) -> InferenceError:
        host = urlsplit(public_url(url)).netloc
        return cls(
            "rate_limit",
            f"Rate limit reached at {host}: it asked for a pause, so nothing was sent.",
            f"Try again in about {seconds:.0f} s; a Hugging Face PRO plan or a local model lifts the limit.",
            url=url,
            retry_after=seconds,
        )

    @classmethod
    def thought_only(cls, url: str) -> InferenceError:
        return cls(
            "empty",
            "The model thought it over (above) but wrote no answer.",
            "Send again, or give it more room: raise Max new tokens in Settings (MAX_NEW_TOKENS in .env).",
            url=url,
            user_hint="Send again, or give it more room: raise Max new tokens in Settings.",
        )

    @classmethod
    def empty(cls, url: str) -> InferenceError:
        return cls(
            "empty",
            "The model sent back an empty answer.",
            "Send again or rephrase; if it keeps happening, check MAX_NEW_TOKENS and the model's chat format.",
            url=url,
        )


def hint_for(error: Mapping[str, Any], runs_the_chat: bool) -> str:
    """What to do about a stored failure (`as_dict`), in words for its reader: the hint as it is for whoever runs
    the chat (the admin, or the operator of a chat without accounts) and whenever anyone can follow it; else what
    a person who cannot change the configuration can do."""
    hint = str(error.get("hint") or "")
    if runs_the_chat or not RUNNING_THE_CHAT.search(hint):
        return hint
    return str(error.get("user_hint") or FOR_USERS.get(str(error.get("kind")), ASK_THE_ADMIN))


def public_url(url: str) -> str:
    """The URL without the user name and password it may carry (http://user:pass@host): for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def error_message(body: Any) -> str:
    """One message from any error envelope the servers use (docs/protocols.md)."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()
    if isinstance(body, list):
        return "; ".join(filter(None, (error_message(item) for item in body)))
    if not isinstance(body, dict):
        return "" if body is None else str(body)
    for key in ("error", "errors", "detail", "message", "msg"):
        if body.get(key):
            return error_message(body[key])
    return ""


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _short_reason(error: Exception) -> str:
    text = str(error)
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "the host name is unknown"),
        ("Temporary failure in name resolution", "the host name could not be looked up"),
        ("No route to host", "no route to the host"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
    ):
        if marker in text:
            return reason
    return _snippet(text, 120)


def _retry_after(headers: Mapping[str, str], body: Any) -> float | None:
    if isinstance(body, dict) and isinstance(body.get("estimated_time"), int | float):
        return float(body["estimated_time"])
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    text: str,
    url: str,
    model_id: str,
    token: str | None = None,
    context_length: int | None = None,
) -> InferenceError:
    """The InferenceError for a non-200 answer from `url`, asked for `model_id` with `token` (never shown) and the
    context length the chat knew (None: unknown)."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    detail = _snippet(error_message(body) or f"HTTP {status}")
    if token:
        detail = detail.replace(token, "hf_***")
    code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    host = urlsplit(public_url(url)).netloc
    model = model_id
    retry_after = _retry_after(headers, body)

    def error(kind: str, message: str, hint: str, window: int | None = None) -> InferenceError:
        return InferenceError(
            kind, message, hint, url=url, status=status, retry_after=retry_after, context_length=window
        )

    if status == 402 or any(words in detail for words in CREDITS_WORDS):
        return error(
            "credits",
            f"{host} refused the request: this Hugging Face account has used up its credits ({detail}).",
            "See https://huggingface.co/settings/billing to add credits or subscribe to PRO, or use a local "
            "model: remove HF_API_TOKEN from .env for the built-in one, or set API_URL to your own server.",
        )
    if status == 401:
        if not token:
            return error("auth", f"No Hugging Face token is set, so {host} refused the request ({detail}).", TOKEN_HINT)
        return error(
            "auth",
            f"{host} refused the token in HF_API_TOKEN: it is wrong, expired or revoked ({detail}).",
            TOKEN_HINT + " For a local server, set HF_API_TOKEN to that server's API key.",
        )
    if status == 403:
        return error(
            "gated",
            f"Your account has no access to {model}: it is a gated or private model ({detail}).",
            f"Ask for access on https://huggingface.co/{model} and wait for approval; a fine-grained "
            "token also needs read access to public gated repositories.",
        )
    if status == 410 or "no longer supported" in detail:
        return error(
            "not_found",
            f"That address is retired ({detail}).",
            "Remove API_URL from .env to use https://router.huggingface.co, or set it to your own server.",
        )
    if status == 404 or code == "model_not_supported" or "not supported by any provider" in detail:
        return error(
            "not_found",
            f"The model {model} is not served at {host} ({detail}).",
            "Check MODEL_ID in .env; pick a model the Hugging Face router serves, "
            "or try INFERENCE_API=chat (the router's chat API serves more models).",
        )
    if status == 429:
        wait = f"about {retry_after:g} s" if retry_after else "a minute"
        return error(
            "rate_limit",
            f"Rate limit reached at {host} ({detail}).",
            f"Wait {wait} before sending again; a Hugging Face PRO plan or a local model lifts the limit.",
        )
    if status == 503 and "loading" in detail.lower():
        wait = f"about {retry_after:g} s" if retry_after else "a little while"
        return error("loading", f"The model {model} is loading ({wait}).", "Wait until it has loaded, then send again.")
    if status in (400, 413, 422) and any(word in detail.lower() for word in TOO_LONG_WORDS):
        window = window_said(error_message(body))
        return error(
            "too_long",
            f"The conversation is too long for the model ({detail}).",
            _too_long_hint(window, model_id, context_length),
            window,
        )
    if 400 <= status < 500:
        return error(
            "bad_request",
            f"The server at {host} rejected the request ({status}: {detail}).",
            "Check MODEL_ID, INFERENCE_API and the generation settings in .env for this model.",
        )
    return error(
        "server",
        f"The server at {host} failed ({status}: {detail}).",
        "Try again in a moment; if it keeps failing, check the server's status or log.",
    )


def window_said(message: str) -> int | None:
    """The context window a server names in its refusal of a prompt too long for it."""
    found = WINDOW_SAID.search(message)
    return int(next(number for number in found.groups() if number)) if found else None


def _too_long_hint(window: int | None, model_id: str, context_length: int | None) -> str:
    """What to do about a prompt too long for the model: shorter when the window is known (the chat has trimmed the
    conversation to it already), else tell the chat the window."""
    if window:
        return (
            f"The model reads at most {window:,} tokens, its answer included: shorten your message or its attached"
            " files, lower Max new tokens in Settings, or start a new chat."
        )
    if context_length:
        return "Start a new chat, or lower MAX_NEW_TOKENS in .env."
    return f"Start a new chat; or {CONTEXT_LENGTH_HINT.format(model=model_id)}."
