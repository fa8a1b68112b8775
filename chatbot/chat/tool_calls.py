"""The tool calls of an answer as they are kept with it (`meta["tool_calls"]`), exported and imported (checked),
and shown: a folded block "Called name(arguments) · 0.4 s" with the arguments and the result inside, as text (never
HTML), and the turns that carry a round of calls and their results back to the model.

A record is {"id", "name", "arguments" (the JSON text the model wrote), "result" (what the model was told),
"status" ("done", "failed", "not run" or "denied": its card was declined or left unanswered; "running" while it
runs), "seconds"}, "at" (where in the answer's text it was made: chat/tool_call_places.py), and "images" (as the
chat's files list them) when the tool returned images that were kept (chat/tool_images.py).
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from chatbot.chat.attachments import fenced
from chatbot.services.protocols import ARGUMENTS_CHARS, ToolCall
from chatbot.services.tools import ToolResult, bounded

SUMMARY_CHARS = 80  # of the arguments, in the block's one line
STATUSES = ("done", "failed", "not run", "denied")
EXPORTED_RESULT_CHARS = 2000  # of a result, in a Markdown export
IMPORTED_CALLS = 100  # records kept per message of an import
HIDDEN_KINDS = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}  # controls, bidi and zero-width marks, unassigned
IMPORTED_NAME_CHARS = 200  # of a record's id and name, in an import


class ForgedRecord(ValueError):
    """A tool call's record in an import that is not one this chat writes: str() says which field."""


def done(result: ToolResult, images: list[dict[str, Any]] | None = None, note: str = "") -> dict[str, Any]:
    """The record of a call that ran (or was refused before it was sent: its result says why), with the `images`
    it returned as they are stored (chat/tool_images.py) and a `note` on those left out."""
    record = {
        "id": result.call_id,
        "name": result.name,
        "arguments": result.arguments,
        "result": f"{result.content}\n{note}" if note else result.content,
        "status": "failed" if result.failed else "done",
        "seconds": round(result.seconds, 1),
    }
    return {**record, "images": images} if images else record


def not_run(call: ToolCall, why: str) -> dict[str, Any]:
    """The record of a call that was not made, and why (what the model is told)."""
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "result": why, "status": "not run"}


def too_long(call: ToolCall) -> dict[str, Any]:
    """The record of a call not made because its arguments were longer than a call may have (none of them kept),
    failed, and why (what the model is told)."""
    why = (
        f"The model's arguments for {call.name} were {call.too_long:,} characters, more than the {ARGUMENTS_CHARS:,}"
        " a call may have, so it was not made. Call it again with shorter arguments."
    )
    return {**not_run(call, why), "status": "failed"}


def running(call: ToolCall) -> dict[str, Any]:
    """The record of a call while it runs: shown at its place, in every tab, until its own record takes its place."""
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "result": "", "status": "running"}


def interrupted(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the answer keeps it when the chat stopped writing it: a call that ran then, failed."""
    if record.get("status") != "running":
        return record
    return {**record, "status": "failed", "result": "The chat stopped while this call ran: what it did is not known."}


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
    return visible(f"{record['name']}({shown})")


def visible(text: str, keep: str = "") -> str:
    """`text` with each character that shows nothing or reorders what follows (controls, bidi and zero-width
    marks, other spaces than " ") written as its escape, \\u202e."""
    return "".join(
        char
        if char in keep or char == " " or not (unicodedata.category(char) in HIDDEN_KINDS or char.isspace())
        else char.encode("unicode_escape").decode()
        for char in text
    )


def pretty(arguments: str) -> str:
    """The arguments as indented JSON, or as the model wrote them when they are not JSON."""
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def as_markdown(record: dict[str, Any]) -> str:
    """A call as a quoted block of a Markdown export: its status and time, the call with its arguments, and its
    result (cut at EXPORTED_RESULT_CHARS), each in a code fence so nothing of them is read as Markdown."""
    seconds = f" · {record['seconds']} s" if record.get("seconds") is not None else ""
    call = f"{record['name']}({record['arguments']})"
    result = record["result"]
    if len(result) > EXPORTED_RESULT_CHARS:
        result = f"{result[:EXPORTED_RESULT_CHARS]}\n[cut: {len(result):,} characters in all]"
    lines = [f"**Tool call · {record['status']}**{seconds}", "", fenced(call), "", "Result:", "", fenced(result)]
    if images := record.get("images"):
        lines += ["", f"_Images: {', '.join(str(image.get('name', '')) for image in images)} (not in the export)_"]
    return "\n".join(f"> {line}".rstrip() for line in "\n".join(lines).splitlines())


def imported(records: Any, max_chars: int) -> list[dict[str, Any]]:
    """The tool calls' records of a message of an import, as this chat writes them: at most IMPORTED_CALLS, their
    texts cut (arguments and result at `max_chars`), their images left out (the files are not in an export);
    ForgedRecord for one with a field of the wrong type or a status this chat does not write."""
    if not isinstance(records, list):
        raise ForgedRecord("its tool calls are not a list")
    kept = []
    for number, record in enumerate(records[:IMPORTED_CALLS], 1):
        if not isinstance(record, dict):
            raise ForgedRecord(f"its tool call {number} is not an object")
        fields = ("id", "name", "arguments", "result")
        if wrong := next((key for key in fields if not isinstance(record.get(key), str)), None):
            raise ForgedRecord(f"its tool call {number} has no text for {wrong!r}")
        texts: dict[str, str] = {key: record[key] for key in fields}
        if record.get("status") not in STATUSES:
            raise ForgedRecord(f"its tool call {number} has the status {str(record.get('status'))[:40]!r}")
        call = {
            "id": texts["id"][:IMPORTED_NAME_CHARS],
            "name": texts["name"][:IMPORTED_NAME_CHARS],
            "arguments": bounded(texts["arguments"], max_chars),
            "result": bounded(texts["result"], max_chars),
            "status": record["status"],
        }
        seconds = record.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds):
            call["seconds"] = round(max(0.0, float(seconds)), 1)
        place = record.get("at")
        if isinstance(place, int) and not isinstance(place, bool) and place >= 0:
            call["at"] = place  # in the text (transfer.py keeps it within the message's, tool_call_places.imported)
        kept.append(call)
    return kept
