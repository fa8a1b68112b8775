"""The MCP servers whose tools the model may call: MCP_SERVERS (chat-ui's JSON list) and the MCP_CONFIG file
(the `mcpServers` object of Claude Desktop, Cursor and llama-server), each checked into a `ToolServer`."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from config import SETTINGS, ConfigError

TRUST = ("ask", "auto")  # ask: each call waits for the user's yes; auto: the model calls it freely
SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # part of each tool's name as the model sees it


@dataclass(frozen=True)
class ToolServer:
    """An MCP server whose tools the model may call: remote (`url`, streamable HTTP, or legacy SSE with
    `transport="sse"`) or a program the chat starts (`command`, stdio) with its own environment `env` alone, in
    the working directory `cwd` (else a folder of its own: services/mcp_stdio.py)."""

    name: str
    trust: str = "ask"
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    transport: str = "http"  # http (streamable HTTP), sse (the older HTTP+SSE) or stdio
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None


REMOTE_FIELDS = ("url", "headers", "trust", "type")
STDIO_FIELDS = ("command", "args", "env", "cwd", "trust", "type")
TRANSPORTS = {"http": "http", "streamable-http": "http", "streamablehttp": "http", "sse": "sse", "stdio": "stdio"}


def tool_servers(listed: str | None, path: str | None) -> tuple[ToolServer, ...]:
    """The MCP servers of MCP_SERVERS (chat-ui's JSON list of {name, url, headers}) and of the MCP_CONFIG file
    ({"mcpServers": {name: {command, args, env} | {url, headers}}}); each may say "trust": "ask" or "auto"."""
    entries: list[tuple[str, str, Any]] = []
    if listed:
        try:
            data = json.loads(listed)
        except ValueError as error:
            raise ConfigError(f"MCP_SERVERS is not valid JSON: {error}.") from None
        if not isinstance(data, list):
            raise ConfigError('MCP_SERVERS is not valid: it takes a JSON list ([{"name": ..., "url": ...}]).')
        for index, entry in enumerate(data, 1):
            name = entry.get("name") if isinstance(entry, dict) else None
            where = f"MCP_SERVERS: server {name!r}" if isinstance(name, str) else f"MCP_SERVERS: server {index}"
            if not isinstance(entry, dict) or "url" not in entry:
                raise ConfigError(f'{where} is not valid: it takes {{"name", "url", "headers"}}.')
            entries.append(
                (where, name if isinstance(name, str) else "", {k: v for k, v in entry.items() if k != "name"})
            )
    if path:
        entries += [(f"MCP_CONFIG: server {name!r}", name, entry) for name, entry in _read_mcp_file(path).items()]
    servers = tuple(_tool_server(where, name, entry) for where, name, entry in entries)
    names = [server.name for server in servers]
    if duplicate := next((name for name in names if names.count(name) > 1), None):
        raise ConfigError(f"The MCP server name {duplicate!r} is given twice: every server needs its own name.")
    return servers


def _read_mcp_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as error:
        raise ConfigError(f"MCP_CONFIG={path!r} is not valid: the file cannot be read ({error.strerror}).") from None
    except ValueError as error:
        raise ConfigError(f"MCP_CONFIG={path!r} is not valid JSON: {error}.") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f'MCP_CONFIG={path!r} is not valid: it takes {{"mcpServers": {{"name": {{...}}}}}}.')
    return servers


def _tool_server(where: str, name: str, entry: Any) -> ToolServer:
    """One server's entry, checked: a ConfigError naming it (`where`) and what is wrong."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not valid: it takes an object with a url or a command.")
    if not SERVER_NAME.fullmatch(name):
        raise ConfigError(f"{where} is not valid: a name takes 1 to 32 letters, digits, _ or -.")
    remote = "url" in entry
    allowed = REMOTE_FIELDS if remote else STDIO_FIELDS
    if unknown := sorted(set(entry) - set(allowed)):
        raise ConfigError(f"{where} has an unknown field {unknown[0]!r}; the fields are {', '.join(allowed)}.")
    try:
        trust = entry.get("trust", "ask")
        if trust not in TRUST:
            raise ValueError('trust takes "ask" (each call waits for a yes) or "auto"')
        transport = TRANSPORTS.get(str(entry.get("type", "http" if remote else "stdio")).lower().replace("_", "-"))
        if transport is None or (transport == "stdio") == remote:
            raise ValueError(f"type {entry['type']!r} does not fit {'a url' if remote else 'a command'}")
        if remote:
            if not str(entry["url"]).startswith(("http://", "https://")):
                raise ValueError("url takes an http:// or https:// URL")
            return ToolServer(
                name,
                trust,
                SETTINGS["API_URL"][0](str(entry["url"])),
                _strings(entry.get("headers"), "headers"),
                transport,
            )
        if not isinstance(entry.get("command"), str) or not entry["command"].strip():
            raise ValueError("it takes a url, or a command to start")
        args = entry.get("args") or []
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            raise ValueError("args takes a list of strings")
        cwd = entry.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isabs(cwd) and os.path.isdir(cwd)):
            raise ValueError("cwd takes the full path of a folder that exists")
        return ToolServer(
            name,
            trust,
            command=entry["command"],
            args=tuple(args),
            env=_strings(entry.get("env"), "env"),
            transport="stdio",
            cwd=cwd,
        )
    except ValueError as error:
        raise ConfigError(f"{where} is not valid: {error}.") from None


def _strings(given: Any, what: str) -> dict[str, str]:
    if given is None:
        return {}
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise ValueError(f"{what} takes an object of strings")
    return {str(key): value for key, value in given.items()}
