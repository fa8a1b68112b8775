"""Export a conversation as Markdown or JSON, and import a JSON export as a new conversation."""

from __future__ import annotations

import json
import re
from typing import Any

from chatbot import reasoning
from chatbot.attachments import safe_name
from chatbot.conversations import Conversation, Message, Store, new_id
from chatbot.rendering import render_markdown
from chatbot.services.unicode_text import valid_data

FORMAT = "chatbot-conversation"
VERSION = 1
ROLES = ("user", "assistant")
STATUSES = ("done", "stopped", "error")
KINDS = ("image", "text", "pdf")  # of an attached file, as a message lists it
MAX_LISTED = 20  # attached files' names kept per message of an import


class ImportProblem(ValueError):
    """Why a file cannot be imported, in words for the user."""


def as_markdown(conversation: Conversation, messages: list[Message]) -> str:
    parts = [f"# {conversation.title}\n"]
    for message in messages:
        speaker = "You" if message.role == "user" else message.meta.get("model", "Assistant")
        parts.append(f"**{speaker}:**\n")
        if message.meta.get("reasoning"):
            heading = f"> _{reasoning.thought_for(message.meta.get('reasoning_seconds'))}:_"
            quoted = "\n".join(f"> {line}" for line in str(message.meta["reasoning"]).splitlines())
            parts.append(f"{heading}\n>\n{quoted}\n")
        parts.append(f"{message.content}\n")
        if message.status == "stopped":
            parts.append("_(stopped: the answer above is partial)_\n")
        if message.error:
            parts.append(f"_(error: {message.error.get('message', '')})_\n")
    return "\n".join(parts)


def as_json(conversation: Conversation, messages: list[Message]) -> str:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "settings": {key: value for key, value in conversation.settings.items() if key != "shares"},  # no links
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error,
                "meta": m.meta,
                "created_at": m.created_at,
            }
            for m in messages
            if m.status != "streaming"
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def file_name(conversation: Conversation, extension: str) -> str:
    stem = re.sub(r"[^\w-]+", "-", conversation.title, flags=re.ASCII).strip("-")[:60] or "conversation"
    return f"{stem}.{extension}"


def read_export(data: bytes, max_chars: int) -> tuple[str, dict, list[Message]]:
    """The title, settings and messages of a JSON export, checked whole; ImportProblem says what is wrong."""
    try:
        document = valid_data(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        raise ImportProblem("That file is not JSON. Choose a file made by Export as JSON.") from None
    except RecursionError:
        raise ImportProblem("That JSON is nested far too deep to be a conversation export.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportProblem("That JSON is not a conversation exported from this chat.")
    if document.get("version") != VERSION:
        raise ImportProblem(f"That export has version {document.get('version')!r}; this chat reads version {VERSION}.")
    title = document.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ImportProblem("The export has no title.")
    messages = [_message(index, item, max_chars) for index, item in enumerate(document.get("messages") or [], 1)]
    if not messages:
        raise ImportProblem("The export has no messages.")
    settings = document.get("settings")
    model = settings.get("model") if isinstance(settings, dict) else None
    return " ".join(title.split())[:200], {"model": model} if isinstance(model, str) else {}, messages


def import_json(store: Store, owner: str, data: bytes, max_chars: int) -> Conversation:
    """A new conversation from a JSON export; the whole file is checked before anything is stored."""
    title, settings, messages = read_export(data, max_chars)
    conversation = store.create_conversation(owner, title)
    try:
        if settings:
            conversation.settings = settings
            store.update_conversation(conversation)
        for message in messages:
            message.conversation_id = conversation.id
            store.add_message(message)
    except BaseException:  # all or nothing: never half a conversation
        store.delete_conversation(conversation)
        raise
    return conversation


def _message(index: int, item: Any, max_chars: int) -> Message:
    where = f"Message {index} of the export"
    if not isinstance(item, dict):
        raise ImportProblem(f"{where} is not an object.")
    role, content, status = item.get("role"), item.get("content"), item.get("status", "done")
    if role not in ROLES:
        raise ImportProblem(f"{where} has the role {role!r}; it takes user or assistant.")
    if not isinstance(content, str) or len(content) > max_chars * 10:
        raise ImportProblem(f"{where} has no text, or far too much.")
    if status not in STATUSES:
        raise ImportProblem(f"{where} has the status {status!r}; it takes {', '.join(STATUSES)}.")
    error = item.get("error") if isinstance(item.get("error"), dict) else None
    if error is not None:
        error = {key: str(error.get(key) or "") for key in ("kind", "message", "hint")} | {"retry_after": None}
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    files = meta.get("attachments")
    meta = {key: value for key, value in meta.items() if isinstance(value, str | int | float) and len(str(key)) < 40}
    if isinstance(files, list):  # their names alone: the files are not in the export, and no id from it is trusted
        meta["attachments"] = [
            {"name": safe_name(str(f.get("name") or "")), "kind": f.get("kind") if f.get("kind") in KINDS else "text"}
            for f in files[:MAX_LISTED]
            if isinstance(f, dict)
        ]
    html = str(render_markdown(content)) if role == "assistant" else ""  # never trust HTML from a file
    return Message(new_id(), "", role, content, html=html, status=status, error=error, meta=meta)
