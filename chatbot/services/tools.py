"""The tools a model is offered for one answer: every tool of the configured MCP servers it may call, under a name
unique to its server, as the chat completions `tools` list; and one call run: its arguments checked (JSON, then the
tool's schema), its result bounded with the servers' secrets hidden, every failure turned into words that go back to
the model as the result.

Every server the answer may use is offered (chatbot/chat/tool_access.py says which); a call of one with
`"trust": "ask"` waits for the user's yes first (chatbot/chat/approvals.py). A server that did not answer is asked
again in the background, at most every FAILED_LISTING_SECONDS: no answer waits for it twice.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
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
from chatbot.services.protocols import NAME_LENGTH
from chatbot.services.remembered import Remembered
from chatbot.services.tool_servers import ToolServer

log = logging.getLogger(__name__)
LISTING_SECONDS = 60.0  # a server's list of tools is asked again after this long
FAILED_LISTING_SECONDS = 15.0  # a server that did not answer is not asked again before this
TOOLS_PER_SERVER = 64  # offered of one server's list: each tool is sent with every request of an answer
DESCRIPTION_CHARS = 1024  # of a tool's description (what OpenAI takes), the rest cut
SCHEMA_CHARS = 8192  # of a tool's inputSchema as JSON: a tool with a longer one is not offered

__all__ = [
    "OfferedTool",
    "ServerCheck",
    "ToolCallStopped",
    "ToolResult",
    "Toolbox",
    "refused_before",
    "refuses_tools",
    "check_servers",
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
    """The tools offered to one answer, how long a call may take, how much of its result is shown, the
    `secrets` hidden in it (redaction.HIDDEN in their place), and the servers that did not answer (`unanswered`)."""

    def __init__(
        self,
        tools: list[OfferedTool],
        timeout: float,
        max_chars: int,
        secrets: list[str] | None = None,
        unanswered: list[str] | None = None,
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.timeout = timeout
        self.max_chars = max_chars
        self.secrets = secrets or []
        self.unanswered = unanswered or []

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
    within `connect_timeout` (logged) offers none until it does, and is named in the toolbox's `unanswered`."""
    offered: list[OfferedTool] = []
    unanswered: list[str] = []
    for server, listed in zip(servers, _listings_of(list(servers), connect_timeout), strict=True):
        if listed is None:
            unanswered.append(server.name)
        for tool in listed or []:
            offered.append(OfferedTool(_unique_name(server.name, tool.name, offered), server, tool))
    secrets = redaction.secrets_of_servers(servers) + list(hidden)
    return Toolbox(offered, timeout, max_chars, secrets, unanswered)


def _listings_of(servers: list[ToolServer], timeout: float) -> list[list[ServerTool] | None]:
    """The tools of each server, asked of all at once: servers that are down cost an answer one wait, not one each."""
    if len(servers) < 2:
        return [_listing(server, timeout) for server in servers]
    with concurrent.futures.ThreadPoolExecutor(len(servers), thread_name_prefix="tool-listing") as pool:
        return list(pool.map(lambda server: _listing(server, timeout), servers))


def _listing(server: ToolServer, timeout: float) -> list[ServerTool] | None:
    """The server's tools with a schema that can be checked (None: it did not answer); asked again each
    LISTING_SECONDS. One that did not answer is asked again in the background once FAILED_LISTING_SECONDS passed,
    so an answer never waits for it after the first time."""
    now = time.monotonic()
    with _listings.lock:
        asked, listed_for, tools = _listings.get(server.name, (0.0, server, None))
        known = bool(asked) and listed_for == server
        if known and tools is None and now - asked >= FAILED_LISTING_SECONDS:
            _listings[server.name] = (now, server, None)  # one retry at a time
            threading.Thread(target=_list, args=(server, timeout), daemon=True, name="mcp-retry").start()
    if known and (tools is None or now - asked < LISTING_SECONDS):
        return tools
    return _list(server, timeout)


def _list(server: ToolServer, timeout: float) -> list[ServerTool] | None:
    """Ask the server for its tools now and remember what it said (None: it did not answer, logged)."""
    try:
        tools: list[ServerTool] | None = _bounded_listing(server, mcp_client.list_tools(server, timeout))
    except ToolServerError as error:
        log.warning("the tools of MCP server %s are not offered: %s", server.name, _problem(server, error))
        tools = None
    with _listings.lock:  # timed from the answer: a server that hangs to its deadline is not asked at once again
        _listings[server.name] = (time.monotonic(), server, tools)
    return tools


def _problem(server: ToolServer, error: ToolServerError) -> str:
    return redaction.without_server_secrets(str(error), server)


@dataclass(frozen=True)
class ServerCheck:
    """Whether a server answered when it was asked (`checked`, on time.monotonic()): its tools, or what went wrong
    (`problem`, in words)."""

    server: ToolServer
    tools: list[ServerTool] = field(default_factory=list)
    problem: str = ""
    checked: float = field(default_factory=time.monotonic)

    def seconds_ago(self) -> int:
        return math.floor(time.monotonic() - self.checked)


_checks: Remembered[str, ServerCheck] = Remembered()  # the last check of each server, by its name


def check_servers(servers: tuple[ToolServer, ...], timeout: float, reuse_seconds: float = 0.0) -> list[ServerCheck]:
    """Ask each server for its tools, all at once, each within `timeout` seconds (the admin page, `flask doctor`),
    unless it was asked less than `reuse_seconds` ago: what it said then is given again. What they said is
    remembered for the answers too."""
    now = time.monotonic()
    with _checks.lock:
        known = {name: check for name, check in _checks.items() if now - check.checked < reuse_seconds}
    checks = {server.name: check for server in servers if (check := known.get(server.name)) and check.server == server}
    asked = [server for server in servers if server.name not in checks]
    if asked:
        with concurrent.futures.ThreadPoolExecutor(min(len(asked), 8)) as pool:
            checks.update((check.server.name, check) for check in pool.map(lambda s: _check(s, timeout), asked))
    return [checks[server.name] for server in servers]


def _check(server: ToolServer, timeout: float) -> ServerCheck:
    try:
        listed = mcp_client.list_tools(server, timeout)
    except ToolServerError as error:
        check = ServerCheck(server, problem=_problem(server, error))
    else:
        with _listings.lock:
            _listings[server.name] = (time.monotonic(), server, _bounded_listing(server, listed))
        check = ServerCheck(server, listed)
    with _checks.lock:
        _checks[server.name] = check
    return check


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
