"""The images a tool returns: kept only when their bytes are PNG, JPEG, GIF or WebP (never trusting the type the
tool declares; an SVG, or anything else, is never shown or served as an image), at most IMAGES_PER_CALL of a call,
IMAGES_PER_ANSWER of an answer and IMAGE_MAX_BYTES each, within the room FILES_KEPT_MB leaves the owner. Those kept
are stored as files of the conversation, the way attached images are (served to its owner alone by the files
blueprint, deleted with it), listed in the call's record (`images`) and shown in its block; a model that takes
images is shown them in a user turn after the round's tool turns (chat completions' tool messages carry text
alone)."""

from __future__ import annotations

from typing import Any

from chatbot.chat import attachments, limits
from chatbot.stores.conversations import Conversation, Files, new_id

IMAGES_PER_CALL = 4
IMAGES_PER_ANSWER = 16
IMAGE_MAX_BYTES = 4 * 1024 * 1024
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def kept(
    store: Files,
    conversation: Conversation,
    tool: str,
    images: list[tuple[str, bytes]],
    earlier: int = 0,
    kept_mb: float = 0,
) -> tuple[list, str]:
    """Store the images of one call of `tool` that may be shown, after the `earlier` ones its answer kept, within
    `kept_mb` (FILES_KEPT_MB) for all of the owner's chats; (what its record lists of them, a note for the model on
    those left out, "" when none were)."""
    listed: list[dict[str, Any]] = []
    left_out: list[str] = []
    for declared, data in images:
        mime = attachments.image_type(data)
        if mime is None:
            left_out.append(f"an image declared as {declared[:40]!r} is not PNG, JPEG, GIF or WebP")
        elif len(data) > IMAGE_MAX_BYTES:
            left_out.append(f"an image of {attachments.megabytes(len(data))} is larger than the most shown")
        elif len(listed) >= IMAGES_PER_CALL:
            left_out.append(f"only {IMAGES_PER_CALL} images of a call are shown")
        elif earlier + len(listed) >= IMAGES_PER_ANSWER:
            left_out.append(f"only {IMAGES_PER_ANSWER} images of an answer are shown")
        elif limits.keeping_problem(store, conversation.owner, kept_mb, len(data), ""):
            left_out.append("the room this chat keeps for its user's files is full")
        else:
            name = attachments.safe_name(f"{tool}-{len(listed) + 1}.{EXTENSIONS[mime]}")
            file_id = new_id()
            info = {"id": file_id, "name": name, "kind": "image", "mime": mime, "size": len(data)}
            store.save_file(conversation, file_id, info, data)
            listed.append(attachments.listed(info))
    note = f"[Not shown: {'; '.join(dict.fromkeys(left_out))}.]" if left_out else ""
    return listed, note


def turn(store: Files, conversation: Conversation, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user turn that shows a model which takes images those the round's calls returned (none: no turn)."""
    found = [
        stored
        for record in records
        for image in record.get("images", [])
        if (stored := store.load_file(conversation, image["id"])) is not None
    ]
    if not found:
        return []
    urls = [attachments.data_url(*stored) for stored in found]
    return [{"role": "user", "content": "The images the tools returned, in order:", "images": urls}]
