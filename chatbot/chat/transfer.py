"""Export a conversation as Markdown (the branch shown) or JSON (every branch), import a JSON export as a new
conversation, and copy a branch into a new conversation."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from chatbot.chat import attachments, reasoning, tool_call_places, tool_calls
from chatbot.chat.attachments import safe_name
from chatbot.chat.branches import Tree
from chatbot.services.unicode_text import valid_data
from chatbot.stores.conversations import Conversation, Message, Store, new_id

FORMAT = "chatbot-conversation"
VERSION = 2  # 2: every branch, each message naming the one it follows; 1 (one line of messages) is still read
ROLES = ("user", "assistant")
STATUSES = ("done", "stopped", "error")
META = {  # what an export's message may say of itself, and of which type; nothing else is kept
    "model": str,
    "provider": str,
    "finish_reason": str,
    "reasoning": str,
    "tokens": int,
    "prompt_tokens": int,
    "tokens_estimated": bool,
    "seconds": float,
    "first_token_seconds": float,
    "tokens_per_second": float,
    "tokens_per_second_estimated": bool,
    "reasoning_seconds": float,
}
MAX_MESSAGES = 5000  # in one import
MAX_CHARS_TIMES = 50  # the text of one import: at most this many times MAX_MESSAGE_CHARS (each answer is rendered)
KINDS = ("image", "text", "pdf")  # of an attached file, as a message lists it
MAX_LISTED = 20  # attached files' names kept per message of an import


class ImportProblem(ValueError):
    """Why a file cannot be imported, in words for the user."""


def as_markdown(conversation: Conversation, tree: Tree) -> str:
    """The branch the conversation shows, as a document to read."""
    parts = [f"# {conversation.title}\n"]
    for message in tree.chosen(conversation.leaf_id):
        speaker = "You" if message.role == "user" else message.meta.get("model", "Assistant")
        parts.append(f"**{speaker}:**\n")
        if message.meta.get("reasoning"):
            heading = f"> _{reasoning.thought_for(message.meta.get('reasoning_seconds'))}:_"
            quoted = "\n".join(f"> {line}" for line in str(message.meta["reasoning"]).splitlines())
            parts.append(f"{heading}\n>\n{quoted}\n")
        if files := attachments.names(message):
            parts.append(f"_Attached: {files}_\n")
        parts += _text_and_calls(message)
        if message.status == "stopped":
            parts.append("_(stopped: the answer above is partial)_\n")
        if message.error:
            parts.append(f"_(error: {message.error.get('message', '')})_\n")
    return "\n".join(parts)


def _text_and_calls(message: Message) -> list[str]:
    """A message's text with its tool calls as quoted blocks at their places (those without one, above it)."""
    unplaced, groups = tool_call_places.grouped(message.meta.get("tool_calls", []))
    parts = [f"{tool_calls.as_markdown(call)}\n" for _, call in unplaced]
    for piece, (_, calls) in zip(tool_call_places.pieces(message.content, groups), [*groups, (0, [])], strict=True):
        if piece.strip():
            parts.append(f"{piece.strip()}\n")
        parts += [f"{tool_calls.as_markdown(call)}\n" for _, call in calls]
    return parts


def as_json(conversation: Conversation, tree: Tree) -> str:
    """Every message of `tree` (an answer being written left out), each naming the one it follows, and the
    branch shown."""
    kept: set[str] = set()
    for message in tree.messages:  # a parent comes before its children
        if message.status != "streaming" and (message.parent_id is None or message.parent_id in kept):
            kept.add(message.id)
    chosen = [m.id for m in tree.chosen(conversation.leaf_id) if m.id in kept]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "settings": {key: value for key, value in conversation.settings.items() if key != "shares"},  # no links
        "chosen": chosen[-1] if chosen else None,
        "messages": [
            {
                "id": m.id,
                "parent": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error,
                "meta": m.meta,
                "created_at": m.created_at,
            }
            for m in tree.messages
            if m.id in kept
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def file_name(conversation: Conversation, extension: str) -> str:
    stem = re.sub(r"[^\w-]+", "-", conversation.title, flags=re.ASCII).strip("-")[:60] or "conversation"
    return f"{stem}.{extension}"


def read_export(data: bytes, max_chars: int) -> tuple[str, dict, list[Message], str]:
    """The title, settings, messages (with new ids, each following the one its file names) and the id of the
    branch's end shown, of a JSON export checked whole; ImportProblem says what is wrong."""
    try:
        document = valid_data(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        raise ImportProblem("That file is not JSON. Choose a file made by Export as JSON.") from None
    except RecursionError:
        raise ImportProblem("That JSON is nested far too deep to be a conversation export.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ImportProblem("That JSON is not a conversation exported from this chat.")
    if document.get("version") not in (1, VERSION):
        raise ImportProblem(
            f"That export has version {document.get('version')!r}; this chat reads version 1 or {VERSION}."
        )
    title = document.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ImportProblem("The export has no title.")
    items = document.get("messages") or []
    if not isinstance(items, list) or not items:
        raise ImportProblem("The export has no messages.")
    total = sum(_text_length(item) for item in items if isinstance(item, dict))
    if len(items) > MAX_MESSAGES or total > max_chars * MAX_CHARS_TIMES:
        raise ImportProblem(
            f"That export holds {len(items):,} messages and {total:,} characters; this chat imports up to "
            f"{MAX_MESSAGES:,} messages and {max_chars * MAX_CHARS_TIMES:,} characters. Start a new chat from a "
            "message of it instead (New chat from here), and export that."
        )
    messages = [_message(index, item, max_chars) for index, item in enumerate(items, 1)]
    new_ids: dict[str, str] = {}  # the file's ids: the message each follows is one before it in the file
    for index, (item, message) in enumerate(zip(items, messages, strict=True), 1):
        if document["version"] == 1:  # one line: each follows the one before
            message.parent_id = messages[index - 2].id if index > 1 else None
            continue
        parent = item.get("parent")
        if parent is not None and (not isinstance(parent, str | int) or str(parent) not in new_ids):
            raise ImportProblem(f"Message {index} of the export follows a message that does not come before it.")
        message.parent_id = new_ids[str(parent)] if parent is not None else None
        new_ids.setdefault(str(item.get("id")), message.id)
    chosen = new_ids.get(str(document.get("chosen")), messages[-1].id) if document["version"] > 1 else messages[-1].id
    settings = document.get("settings")
    model = settings.get("model") if isinstance(settings, dict) else None
    return " ".join(title.split())[:200], {"model": model} if isinstance(model, str) else {}, messages, chosen


def import_json(store: Store, owner: str, data: bytes, max_chars: int) -> Conversation:
    """A new conversation from a JSON export; the whole file is checked before anything is stored."""
    title, settings, messages, chosen = read_export(data, max_chars)
    return _new_conversation(store, owner, title, settings, messages, chosen)


def copy_branch(store: Store, conversation: Conversation, branch: list[Message]) -> Conversation:
    """A new conversation of the same owner, model and settings (not its share links) holding a copy of
    `branch`, a first message and those that follow it, with their attached files and the images of their tool
    calls."""
    copies: list[Message] = []
    for message in branch:
        if message.status == "streaming":
            break
        parent = copies[-1].id if copies else None
        copies.append(Message(**{**vars(message), "id": new_id(), "parent_id": parent, "meta": dict(message.meta)}))
    files = [
        found
        for message in copies
        for listed in files_of(message)
        if listed.get("id") and (found := store.load_file(conversation, listed["id"]))
    ]
    settings = {key: value for key, value in conversation.settings.items() if key != "shares"}
    return _new_conversation(store, conversation.owner, conversation.title, settings, copies, "", files)


def _new_conversation(
    store: Store,
    owner: str,
    title: str,
    settings: dict,
    messages: list[Message],
    chosen: str,
    files: Sequence[tuple[dict, bytes]] = (),
) -> Conversation:
    """All or nothing: never half a conversation. `files`: (info, bytes) of the files its messages list."""
    conversation = store.create_conversation(owner, title)
    try:
        if settings:
            conversation.settings = settings
            store.update_conversation(conversation)
        for info, data in files:
            store.save_file(conversation, info["id"], info, data)
        for message in messages:
            message.conversation_id = conversation.id
            store.add_message(message)
        if chosen:
            store.choose_branch(conversation, chosen)
    except BaseException:
        store.delete_conversation(conversation)
        raise
    return conversation


def files_of(message: Message) -> list[dict]:
    """The files a message lists: those attached to it, and the images its tool calls returned."""
    calls = message.meta.get("tool_calls", [])
    return [*message.meta.get("attachments", []), *(image for call in calls for image in call.get("images", []))]


def _text_length(item: dict) -> int:
    """The characters an export's message brings: its text, its error's words and the text in its meta (reasoning)."""
    meta = item.get("meta")
    calls = meta.get("tool_calls") if isinstance(meta, dict) else None
    records = calls[: tool_calls.IMPORTED_CALLS] if isinstance(calls, list) else []
    texts = [item.get("content"), *_values(item.get("error")), *_values(meta)]
    texts += [text for record in records for text in _values(record)]
    return sum(len(text) for text in texts if isinstance(text, str))


def _values(field: Any) -> list:
    return list(field.values()) if isinstance(field, dict) else []


def _fits(kind: type | None, value: Any, max_chars: int) -> bool:
    """Whether an export's meta value is of the type its key takes (numbers finite, text not too long)."""
    if kind is str:
        return isinstance(value, str) and len(value) <= max_chars
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, int)
    return kind is float and isinstance(value, int | float) and math.isfinite(value)


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
        words = {key: error.get(key) for key in ("kind", "message", "hint")}
        error = {key: value if _fits(str, value, max_chars) else "" for key, value in words.items()}
        error["retry_after"] = None
    meta = item.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    files, calls = meta.get("attachments"), meta.get("tool_calls")
    meta = {key: value for key, value in meta.items() if _fits(META.get(key), value, max_chars * 10)}
    if calls is not None and role == "assistant":
        try:
            meta["tool_calls"] = tool_calls.imported(calls, max_chars)
            tool_call_places.imported(meta["tool_calls"], len(content))
        except tool_calls.ForgedRecord as forged:
            raise ImportProblem(f"{where} is not valid: {forged}.") from None
    if isinstance(files, list):  # their names alone: the files are not in the export, and no id from it is trusted
        meta["attachments"] = [
            {"name": safe_name(str(f.get("name") or "")), "kind": f.get("kind") if f.get("kind") in KINDS else "text"}
            for f in files[:MAX_LISTED]
            if isinstance(f, dict)
        ]
    html = tool_call_places.rendered(content, meta.get("tool_calls", [])) if role == "assistant" else ""  # not a file's
    return Message(new_id(), "", role, content, html=html, status=status, error=error, meta=meta)
