"""What is checked before a message is sent: its text, the message an edit replaces, and its files."""

from __future__ import annotations

from chatbot.chat import attachments
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services import discovery
from chatbot.services.prompts import estimate_tokens
from chatbot.stores.conversations import Conversation, Store


def message_problem(text: str, limit: int, with_files: bool = False) -> str | None:
    """Why a message (`with_files`: files go with it) cannot be sent, in words for the user; None when it can."""
    if not text and not with_files:
        return "Type a message first."
    if len(text) > limit:
        return f"Your message has {len(text):,} characters; the limit is {limit:,}. Shorten it and send again."
    return None


def can_edit(store: Store, conversation: Conversation, message_id: str) -> bool:
    """Whether `message_id` is one of the user's messages in the conversation (its edited text can be sent)."""
    return any(m.id == message_id and m.role == "user" for m in store.messages(conversation))


def files_to_send(
    store: Store,
    conversation: Conversation,
    file_ids: list[str],
    text: str,
    settings: ReplySettings,
    max_files: int,
    new: list[attachments.Attachment] | tuple = (),
) -> list[dict]:
    """The files to send with `text` (as stored): this conversation's named by `file_ids`, and the `new` uploads,
    which are stored once every check has passed. AttachmentProblem says why not, before anything is saved, so the
    message and its files stay in the box."""
    files = []
    for file_id in list(dict.fromkeys(file_ids))[: max_files + 1]:  # each once, and never more than can be told
        found = store.load_file(conversation, file_id)
        if found is None:
            raise attachments.AttachmentProblem("An attached file is no longer there. Attach it again.")
        files.append(found[0])
    files += [upload.info for upload in new]
    if problem := _attachments_problem(files, text, settings, max_files):
        raise attachments.AttachmentProblem(problem)
    for upload in new:
        store.save_file(conversation, upload.info["id"], upload.info, upload.data)
    return files


def _attachments_problem(files: list[dict], text: str, settings: ReplySettings, max_files: int) -> str | None:
    if not files:
        return None
    backend = discovery.with_server_facts(settings.backend)
    room = backend.context_length - settings.parameters.max_new_tokens if backend.context_length else None
    if room is not None and settings.system_prompt:
        room -= estimate_tokens(settings.system_prompt)
    name = settings.model_name or backend.model_id
    return attachments.sending_problem(files, text, name, settings.takes_images, room, max_files)
