"""The tool calls of an answer as they are kept with it (`meta["tool_calls"]`) and shown: a folded block "Called
name(arguments) · 0.4 s" with the arguments and the result inside, as text (never HTML), and the turns that
carry a round of calls and their results back to the model.

A record is {"id", "name", "arguments" (the JSON text the model wrote), "result" (what the model was told),
"status" ("done", "failed", "not run" or "denied": its card was declined or left unanswered), "seconds"}.
"""

from __future__ import annotations

import json
from typing import Any

from chatbot.services.protocols import ToolCall
from chatbot.services.tools import ToolResult

SUMMARY_CHARS = 80  # of the arguments, in the block's one line


def done(result: ToolResult) -> dict[str, Any]:
    """The record of a call that ran (or was refused before it was sent: its result says why)."""
    return {
        "id": result.call_id,
        "name": result.name,
        "arguments": result.arguments,
        "result": result.content,
        "status": "failed" if result.failed else "done",
        "seconds": round(result.seconds, 1),
    }


def not_run(call: ToolCall, why: str) -> dict[str, Any]:
    """The record of a call that was not made, and why (what the model is told)."""
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "result": why, "status": "not run"}


def denied(call: ToolCall, why: str) -> dict[str, Any]:
    """The record of a call its user did not allow (chat/approvals.py), and why (what the model is told)."""
    return {**not_run(call, why), "status": "denied"}


def round_turns(text: str, calls: list[ToolCall], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assistant's turn that made `calls` (with the `text` it wrote before them), then one tool turn per
    call with what it was told."""
    turns: list[dict[str, Any]] = [
        {"role": "assistant", "content": text, "tool_calls": [call.as_message_part() for call in calls]}
    ]
    turns += [{"role": "tool", "tool_call_id": record["id"], "content": record["result"]} for record in records]
    return turns


def summary(record: dict[str, Any]) -> str:
    """`name(key: value, ...)`, its arguments cut to one short line."""
    try:
        arguments = json.loads(record["arguments"] or "{}")
    except ValueError:
        arguments = None
    if isinstance(arguments, dict):
        shown = ", ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in arguments.items())
    else:
        shown = record["arguments"]
    if len(shown) > SUMMARY_CHARS:
        shown = shown[: SUMMARY_CHARS - 1] + "…"
    return f"{record['name']}({shown})"


def pretty(arguments: str) -> str:
    """The arguments as indented JSON, or as the model wrote them when they are not JSON."""
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments
