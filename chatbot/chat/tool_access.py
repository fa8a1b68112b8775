"""Which MCP servers' tools an answer is offered: those the admin lets the account use (`Account.tool_servers`;
None: every one), less those switched off in the chat's Settings (the names in its settings' "tools_off")."""

from __future__ import annotations

from typing import Any

from chatbot.services.tool_servers import ToolServer


def for_account(servers: tuple[ToolServer, ...], allowed: list[str] | None) -> tuple[ToolServer, ...]:
    """The `servers` an account may use: those it is `allowed` (None: all)."""
    return servers if allowed is None else tuple(server for server in servers if server.name in allowed)


def switched_on(servers: tuple[ToolServer, ...], chosen: dict[str, Any]) -> tuple[ToolServer, ...]:
    """The `servers` a chat whose settings are `chosen` keeps on (each is on until switched off)."""
    off = set(chosen.get("tools_off") or ())
    return tuple(server for server in servers if server.name not in off)


def switches(servers: tuple[ToolServer, ...], chosen: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each server the Settings panel shows, and whether it is on in this chat."""
    on = switched_on(servers, chosen)
    return [(server.name, server in on) for server in servers]


def switch(chosen: dict[str, Any], servers: tuple[ToolServer, ...], on: list[str]) -> None:
    """Keep in a chat's settings `chosen` that of the `servers` shown, only those named in `on` are on."""
    chosen["tools_off"] = [server.name for server in servers if server.name not in on]
