"""The token (and a URL's password) never reach a page, an export or a log: a server that echoes the request's
Authorization header in an answer, an error inside the stream or a malformed line gets it replaced."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from chatbot.services.backend import Backend
from chatbot.services.errors import InferenceError
from chatbot.services.protocols.base import Chunk, held_back

HIDDEN = "hf_***"


def secrets_of(backend: Backend) -> list[str]:
    """What must not be shown: the token, and the password inside the backend's URL."""
    password = urlsplit(backend.url).password
    return [secret for secret in (backend.token, password) if secret and len(secret) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    return text


def scrubbed(error: InferenceError, secrets: list[str]) -> InferenceError:
    error.message, error.hint = scrub(error.message, secrets), scrub(error.hint, secrets)
    error.args = (error.message,)
    return error


def redacted(chunks: Iterator[Chunk], secrets: list[str]) -> Iterator[Chunk]:
    """The stream with every secret hidden, also one cut between two pieces (the end of a piece that could begin
    one waits for the next piece)."""
    if not secrets:
        return chunks

    def feed(text: str) -> tuple[str, str]:
        text = scrub(text, secrets)
        keep = max((n for secret in secrets for n in range(1, len(secret)) if text.endswith(secret[:n])), default=0)
        return (text[:-keep], text[-keep:]) if keep else (text, "")

    return held_back(chunks, feed)
