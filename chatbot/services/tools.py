"""The tools a model is offered for one answer: every tool of the configured MCP servers it may call, under a name
unique to its server, as the chat completions `tools` list; and one call run: its arguments checked (JSON, then the
tool's schema), its result bounded with the servers' secrets hidden, every failure turned into words that go back to
the model as the result.

Every configured server is offered; a call of one with `"trust": "ask"` waits for the user's yes first
(chatbot/chat/approvals.py).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from chatbot.services import mcp_client, redaction
from chatbot.services.backend import Backend
from chatbot.services.errors import InferenceError
from chatbot.services.mcp_client import ServerTool, ToolCallStopped, ToolServerError
from chatbot.services.remembered import Remembered
from chatbot.services.tool_servers import ToolServer

log = logging.getLogger(__name__)
NAME_LENGTH = 64  # what OpenAI-style servers take for a function's name (letters, digits, _ and -)
LISTING_SECONDS = 60.0  # a server's list of tools is asked again after this long
FAILED_LISTING_SECONDS = 15.0  # a server that did not answer is not asked again before this
TOOLS_PER_SERVER = 64  # offered of one server's list: each tool is sent with every request of an answer
DESCRIPTION_CHARS = 1024  # of a tool's description (what OpenAI takes), the rest cut
SCHEMA_CHARS = 8192  # of a tool's inputSchema as JSON: a tool with a longer one is not offered

__all__ = [
    "OfferedTool",
    "ToolCallStopped",
    "ToolResult",
    "Toolbox",
    "refused_before",
    "refuses_tools",
    "remember_refusal",
    "toolbox_for",
]


@dataclass(frozen=True)
class OfferedTool:
    """One tool as the model sees it (`name`), and where it lives."""

    name: str
    server: ToolServer
    tool: ServerTool

    def definition(self) -> dict[str, Any]:
        """The chat completions `tools` entry."""
        description = self.tool.description or f"The {self.tool.name} tool of {self.server.name}."
        function = {"name": self.name, "description": description, "parameters": self.tool.input_schema}
        return {"type": "function", "function": function}


@dataclass
class ToolResult:
    """One call done: what the model asked (`name`, `arguments` as it sent them), what it is told (`content`),
    whether it failed, how long it took, and the images the tool returned."""

    call_id: str
    name: str
    arguments: str
    content: str
    failed: bool = False
    seconds: float = 0.0
    images: list[tuple[str, bytes]] = field(default_factory=list)


class Toolbox:
    """The tools offered to one answer, how long a call may take, how much of its result is shown, and the
    `secrets` hidden in it (redaction.HIDDEN in their place)."""

    def __init__(
        self, tools: list[OfferedTool], timeout: float, max_chars: int, secrets: list[str] | None = None
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.timeout = timeout
        self.max_chars = max_chars
        self.secrets = secrets or []

    def __bool__(self) -> bool:
        return bool(self.tools)

    def definitions(self) -> list[dict[str, Any]]:
        """The `tools` list, the servers' secrets hidden in it (a server may write its token in a description)."""
        return [redaction.scrubbed_value(tool.definition(), self.secrets) for tool in self.tools.values()]

    def call(self, call_id: str, name: str, arguments: str, cancel: threading.Event | None = None) -> ToolResult:
        """Run one call the model asked for; whatever fails is said in the result. ToolCallStopped when `cancel`
        was set while it ran (it is cancelled on its server)."""
        started = time.monotonic()
        result = ToolResult(call_id, name, arguments, "")
        try:
            offered = self.tools.get(name)
            if offered is None:
                raise _Refused(f"There is no tool named {name!r}. The tools are: {', '.join(self.tools) or 'none'}.")
            checked = _checked_arguments(arguments, offered.tool.input_schema)
            output = mcp_client.call_tool(offered.server, offered.tool.name, checked, self.timeout, cancel)
            result.images = output.images
            result.failed = output.failed
            result.content = f"The tool failed: {output.text}" if output.failed else output.text
        except (_Refused, ToolServerError) as failure:
            result.failed, result.content = True, str(failure)
        result.content = bounded(redaction.scrub(result.content, self.secrets), self.max_chars)
        result.seconds = round(time.monotonic() - started, 3)
        return result


class _Refused(Exception):
    """A call not sent: its words are the result."""


def bounded(text: str, max_chars: int) -> str:
    """`text`, cut at `max_chars` with a note the model sees."""
    if len(text) <= max_chars:
        return text
    note = f"[The result was cut: it has {len(text):,} characters, only the first {max_chars:,} are shown.]"
    return f"{text[:max_chars]}\n{note}"


def _checked_arguments(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The arguments as an object valid against the tool's schema, else _Refused saying what to change."""
    try:
        arguments = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise _Refused(f"The arguments are not valid JSON ({error}). Call the tool again with a JSON object.") from None
    if not isinstance(arguments, dict):
        raise _Refused("The arguments must be a JSON object of named values. Call the tool again with one.")
    validator = _without_patterns(jsonschema.validators.validator_for(schema))(schema)
    mismatch = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if mismatch is not None:
        where = "".join(f"[{part!r}]" for part in mismatch.absolute_path)
        at = f" (at arguments{where})" if where else ""
        raise _Refused(
            f"The arguments do not fit the tool: {mismatch.message}{at}. Call the tool again with fixed ones."
        )
    return arguments


def _without_patterns(checker: Any) -> Any:
    """The schema's validator class with none of its regular expressions run on the model's arguments: a server's
    pattern may take Python's `re` hours on a few dozen characters, holding the GIL and so the whole process (the
    server checks its own patterns). `pattern` is not checked, nor properties against `patternProperties`, nor
    `additionalProperties` or `unevaluatedProperties` (they match property names against them) beside them."""
    keywords = checker.VALIDATORS

    def additional(validator: Any, extras: Any, instance: Any, schema: dict[str, Any]) -> Any:
        if "patternProperties" not in schema:
            yield from keywords["additionalProperties"](validator, extras, instance, schema)

    def unchecked(*_: Any) -> Any:
        yield from ()

    changed = {"pattern": unchecked, "patternProperties": unchecked, "unevaluatedProperties": unchecked}
    if "additionalProperties" in keywords:
        changed["additionalProperties"] = additional
    return jsonschema.validators.extend(checker, {k: v for k, v in changed.items() if k in keywords})


_listings: Remembered[str, tuple[float, ToolServer, list[ServerTool] | None]] = Remembered()


def toolbox_for(
    servers: tuple[ToolServer, ...],
    timeout: float,
    max_chars: int,
    connect_timeout: float,
    hidden: tuple[str, ...] = (),
) -> Toolbox:
    """The tools of the `servers`, each call within `timeout` seconds and its result cut at `max_chars`, the
    servers' secrets and the `hidden` ones (the model server's token) hidden in it; a server that does not answer
    within `connect_timeout` (logged) offers none until it does."""
    offered: list[OfferedTool] = []
    for server, listed in zip(servers, _listings_of(list(servers), connect_timeout), strict=True):
        for tool in listed:
            offered.append(OfferedTool(_unique_name(server.name, tool.name, offered), server, tool))
    return Toolbox(offered, timeout, max_chars, redaction.secrets_of_servers(servers) + list(hidden))


def _listings_of(servers: list[ToolServer], timeout: float) -> list[list[ServerTool]]:
    """The tools of each server, asked of all at once: servers that are down cost an answer one wait, not one each."""
    if len(servers) < 2:
        return [_listing(server, timeout) for server in servers]
    with concurrent.futures.ThreadPoolExecutor(len(servers), thread_name_prefix="tool-listing") as pool:
        return list(pool.map(lambda server: _listing(server, timeout), servers))


def _listing(server: ToolServer, timeout: float) -> list[ServerTool]:
    """The server's tools with a schema that can be checked; asked again each LISTING_SECONDS."""
    now = time.monotonic()
    with _listings.lock:
        asked, listed_for, tools = _listings.get(server.name, (0.0, server, None))
    fresh = listed_for == server and now - asked < (LISTING_SECONDS if tools is not None else FAILED_LISTING_SECONDS)
    if fresh and asked:
        return tools or []
    try:
        tools = _bounded_listing(server, mcp_client.list_tools(server, timeout))
    except ToolServerError as error:
        reason = redaction.without_server_secrets(str(error), server)
        log.warning("the tools of MCP server %s are not offered: %s", server.name, reason)
        tools = None
    with _listings.lock:  # timed from the answer: a server that hangs to its deadline is not asked at once again
        _listings[server.name] = (time.monotonic(), server, tools)
    return tools or []


def _bounded_listing(server: ToolServer, listed: list[ServerTool]) -> list[ServerTool]:
    """What the model is offered of a server's list (a hostile one may list thousands of tools with descriptions
    and schemas of megabytes): its first TOOLS_PER_SERVER tools with a schema at most SCHEMA_CHARS long that can be
    checked, their descriptions cut at DESCRIPTION_CHARS; what is left out is logged, once a listing."""
    short = [tool for tool in listed if len(json.dumps(tool.input_schema)) <= SCHEMA_CHARS]
    if long := len(listed) - len(short):
        log.warning(
            "%d tools of MCP server %s are not offered: their inputSchema is over %d characters",
            long,
            server.name,
            SCHEMA_CHARS,
        )
    tools = [
        dataclasses.replace(tool, description=tool.description[:DESCRIPTION_CHARS])
        for tool in short
        if _schema_is_valid(server, tool)
    ]
    if len(tools) > TOOLS_PER_SERVER:
        log.warning(
            "MCP server %s lists %d tools: only its first %d are offered", server.name, len(tools), TOOLS_PER_SERVER
        )
    return tools[:TOOLS_PER_SERVER]


def _schema_is_valid(server: ToolServer, tool: ServerTool) -> bool:
    try:
        jsonschema.validators.validator_for(tool.input_schema).check_schema(tool.input_schema)
    except jsonschema.exceptions.SchemaError as error:
        log.warning(
            "tool %s of MCP server %s is not offered: its inputSchema is not valid (%s)",
            tool.name[:100],
            server.name,
            error.message[:200],
        )
        return False
    return True


def _unique_name(server: str, tool: str, taken: list[OfferedTool]) -> str:
    """`server__tool` in the characters function names take, at most NAME_LENGTH long, unique among `taken`."""
    base = f"{server}__{re.sub(r'[^A-Za-z0-9_-]', '_', tool)}"[:NAME_LENGTH]
    names = {offered.name for offered in taken}
    name, number = base, 1
    while name in names:
        number += 1
        name = f"{base[: NAME_LENGTH - len(str(number)) - 1]}_{number}"
    return name


_refusals: Remembered[tuple[str, str], str] = Remembered()  # (url, model) -> what its server said of tools


def refuses_tools(error: InferenceError) -> bool:
    """Whether a server refused a request because it offered tools (llama.cpp without --jinja, vLLM without a
    tool parser, a provider whose model takes none): a 400 that names them."""
    return error.status == 400 and "tool" in error.message.lower()


def remember_refusal(backend: Backend, error: InferenceError) -> str:
    """Keep that this model's server takes no tools (it is not offered them again by this process), and say so."""
    with _refusals.lock:
        _refusals[(backend.url, backend.model_id)] = error.message
    return (
        f"This model's server does not take tools ({error.message.rstrip('.')}), so it answered without them. "
        "For a llama.cpp server, start it with --jinja."
    )


def refused_before(backend: Backend) -> bool:
    with _refusals.lock:
        return (backend.url, backend.model_id) in _refusals
