"""Secrets never reach a page, an export, a log or a model that should not see them: the token (and a URL's
password) that a server echoes in an answer, an error inside the stream or a malformed line, the token a model
puts into a tool call's name or arguments, and an MCP server's own headers, environment and URL secrets in what
its tools return; each is replaced by HIDDEN."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chatbot.services.backend import Backend
from chatbot.services.errors import InferenceError
from chatbot.services.protocols.base import Chunk, ToolCall, held_back
from chatbot.services.tool_servers import ToolServer

HIDDEN = "hf_***"
SECRET_NAME = re.compile(r"auth|token|key|secret|passw|pwd|cookie|credential|session|signature", re.IGNORECASE)


def secrets_of(backend: Backend) -> list[str]:
    """What must not be shown: the token, and the password inside the backend's URL."""
    return _long_enough([backend.token, urlsplit(backend.url).password])


def secrets_of_servers(servers: Iterable[ToolServer]) -> list[str]:
    """What of the MCP servers' configuration must not be shown: the values of their secret-looking headers and
    environment variables (Authorization, tokens, keys, passwords; of "Bearer <token>" the token), the values of a
    stdio server's secret-looking options (`--api-key K`, `--token=T`), and the passwords and secret-looking query
    values of their URLs and of URLs in their headers, environment and options (DATABASE_URL=postgres://u:p@db)."""
    found: list[str | None] = []
    for server in servers:
        named = {**server.headers, **server.env}
        found += [_credential(value) for name, value in named.items() if SECRET_NAME.search(name)]
        found += _option_values(server.args)
        for value in [server.url or "", *named.values(), *server.args]:
            found += _url_secrets(value.split("=", 1)[-1] if value.startswith("-") else value)
    return _long_enough(found)


def _option_values(args: tuple[str, ...]) -> list[str]:
    """The values of secret-looking options among a command's `args`: `--api-key K` and `--token=T`."""
    found = []
    for number, arg in enumerate(args):
        option, equals, value = arg.partition("=")
        if option.startswith("-") and SECRET_NAME.search(option):
            found.append(value if equals else args[number + 1] if number + 1 < len(args) else "")
    return found


def _url_secrets(text: str) -> list[str | None]:
    """The password and the secret-looking query values of `text` when it is a URL."""
    if "://" not in text:
        return []
    try:
        url = urlsplit(text.strip())
        password = url.password
    except ValueError:
        return []
    return [password, *(value for name, value in parse_qsl(url.query) if SECRET_NAME.search(name))]


def without_server_secrets(text: str, server: ToolServer) -> str:
    """`text` (a server's failure, for a log) with that server's secrets hidden."""
    return scrub(text, secrets_of_servers([server]))


def _credential(value: str) -> str:
    """Of "<scheme> <credential>" (Bearer, Basic, Token), the credential: the scheme alone is no secret."""
    parts = value.split()
    return parts[1] if len(parts) == 2 else value


def _long_enough(found: Iterable[str | None]) -> list[str]:
    return [secret for secret in found if secret and len(secret) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    return text


def scrubbed(error: InferenceError, secrets: list[str]) -> InferenceError:
    error.message, error.hint = scrub(error.message, secrets), scrub(error.hint, secrets)
    error.args = (error.message,)
    return error


def scrubbed_call(call: ToolCall, secrets: list[str]) -> ToolCall:
    """A tool call whose id, name and arguments hide every secret; in arguments that are JSON, also one written
    with escapes (the JSON is then written anew)."""
    if not secrets:
        return call
    arguments = scrub(call.arguments, secrets)
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if value is not None and (hidden := scrubbed_value(value, secrets)) != value:
        arguments = json.dumps(hidden, ensure_ascii=False)
    return dataclasses.replace(call, id=scrub(call.id, secrets), name=scrub(call.name, secrets), arguments=arguments)


def scrubbed_value(value: Any, secrets: list[str]) -> Any:
    """A JSON value with every secret in its strings (keys too) hidden."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list):
        return [scrubbed_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {scrub(key, secrets): scrubbed_value(item, secrets) for key, item in value.items()}
    return value


def redacted(chunks: Iterator[Chunk], secrets: list[str]) -> Iterator[Chunk]:
    """The stream with every secret hidden, also one cut between two pieces (the end of a piece that could begin
    one waits for the next piece)."""
    if not secrets:
        return chunks

    def feed(text: str) -> tuple[str, str]:
        text = scrub(text, secrets)
        keep = max(
            (
                n
                for secret in secrets
                if secret[0] in text[1 - len(secret) :]
                for n in range(1, len(secret))
                if text.endswith(secret[:n])
            ),
            default=0,
        )  # looked for only where a secret's first character is near the end: a piece is often a whole read
        return (text[:-keep], text[-keep:]) if keep else (text, "")

    return held_back(chunks, feed)
