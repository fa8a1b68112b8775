"""What every blueprint of the web layer shares (this module is not a blueprint): the store, the visitor's own
conversation, the chat page, the limits as this request's visitor and address meet them, uploads and files."""

from __future__ import annotations

import io
from datetime import datetime

from flask import abort, current_app, g, render_template, request, send_file, session

from chatbot.chat import accounts, approvals, attachments, chat_list, defaults, limits, picker, presets, tool_access
from chatbot.chat.actions import Visitor
from chatbot.chat.branches import Tree
from chatbot.chat.reply_settings import changed_settings, settings_for_conversation
from chatbot.chat.running import running_answer
from chatbot.stores.conversations import Conversation, Store
from chatbot.web.security import owner_id

FILE_CSP = "default-src 'none'; sandbox"  # opened on its own, a file can run nothing and load nothing


def store() -> Store:
    return current_app.extensions["chat_store"]


def own_conversation(conversation_id: str) -> Conversation:
    """The session's conversation, or 404: someone else's id reveals nothing."""
    conversation = store().get_conversation(owner_id(), conversation_id)
    if conversation is None:
        abort(404)
    return conversation


def chat_page(
    conversation: Conversation,
    notice: str = "",
    draft: str = "",
    status: int = 200,
    files: list[dict] | tuple = (),
    made_link: str = "",
):
    """The chat page; `draft` in the box and `files` (as stored) attached to it, when a message was refused; a share
    link just made beside its form."""
    query = request.args.get("q", "").strip()
    owner = conversation.owner
    listed = store().search_conversations(owner, query) if query else store().list_conversations(owner)
    config = visible_config()
    tree = Tree(store().messages(conversation))
    return render_template(
        "chat/page.html",
        conversation=conversation,
        conversations=listed,
        chat_groups=chat_list.grouped(listed, datetime.now().astimezone()),  # the server's days
        query=query,
        messages=tree.chosen(conversation.leaf_id),
        tree=tree,
        busy=running_answer(tree.messages) is not None,
        settings=settings_for_conversation(conversation, config),
        **model_menu(conversation, config, request.args.get("models")),
        examples=picker.EXAMPLES,  # for an empty chat
        has_default=defaults.has_default(store(), conversation.owner),
        presets=presets.available(store(), conversation.owner),
        always_allowed=approvals.always_allowed(store(), conversation.owner),
        tool_switches=tool_access.switches(config["TOOL_SERVERS"], conversation.settings),
        notice=notice or (session.pop("notice") if "notice" in session else ""),  # one left for it at sign-in
        draft=draft,
        made_link=made_link,
        chosen_files=[attachments.listed(info) for info in files],
        left=limits.left(store(), conversation.owner, own_limits) if (own_limits := account_limits()) else "",
    ), status


def model_menu(conversation: Conversation, config: dict, typed: str | None = None) -> dict:
    """What the chat's model menu shows: the model picked, the models (those whose name holds `typed`, when a
    search was made: the menu is open then) and the settings that differ from the model's own."""
    choices = picker.choices(config)
    return {
        "chosen": picker.choice(config, conversation.settings.get("model")),
        "choices": choices,
        "listed": picker.matching(choices),
        "menu": picker.menu(choices, typed or ""),
        "menu_query": typed,
        "changed": changed_settings(conversation, config),
    }


def visible_config() -> dict:
    """The configuration as the signed-in account sees it (only the models it may pick)."""
    return picker.for_account(current_app.config, g.get("account"))


def runs_the_chat(account: accounts.Account | None, config: dict) -> bool:
    """Whether this reader can change the chat's configuration (and so is told about `.env`): an admin, or the
    operator of a chat nobody signs in to that is not open to others."""
    return bool(account and account.admin) or (config["AUTH"] == "none" and not config["OPEN_TO_ANYONE"])


def visitor() -> Visitor:
    """Who this request comes from, as the chat's actions see them."""
    return Visitor(visible_config(), account_limits(), request.remote_addr)


def keeping_problem(adding: int, then: str) -> str | None:
    """Why `adding` more bytes of files or share snapshots cannot be kept for this visitor (FILES_KEPT_MB)."""
    return limits.keeping_problem(store(), owner_id(), current_app.config["FILES_KEPT_MB"], adding, then)


def limited(kind: str) -> str | None:
    """Count one use of `kind` ("answers", "conversations") by this visitor and address; why not, if not."""
    return limits.refusal(store(), current_app.config, kind, owner_id(), request.remote_addr, account_limits())


def account_limits() -> dict | None:
    """The limits the admin set for accounts, when someone is signed in."""
    return accounts.site_settings(store(), current_app.config) if g.get("account") is not None else None


def problem_page(heading: str, reason: str, status: int):
    return render_template("problem.html", heading=heading, reason=reason, sending=request.method == "POST"), status


def refused_new_chat(reason: str):
    """The newest chat with the reason no new one was made (a page of its own when there is none)."""
    current = store().list_conversations(owner_id())
    if current:
        return chat_page(current[0], reason, status=429)
    return problem_page("No new chat for now", reason, 429)


def uploads(field: str) -> list[attachments.Attachment]:
    """The files of the request's `field`, each checked and counted against the files an hour this visitor and
    address may attach (never more than one past the limit is read, so that the limit can be told without reading
    a hundred), and all of them against what the visitor's chats may keep; AttachmentProblem for the first that
    cannot be attached."""
    limits = attachments.Limits.from_config(current_app.config)
    given = [upload for upload in request.files.getlist(field) if upload.filename]
    checked = []
    for upload in given[: current_app.config["MAX_ATTACHMENTS"] + 1]:
        if refused := limited("files"):
            raise attachments.AttachmentProblem(refused)
        checked.append(attachments.check(upload.filename or "", upload.read(limits.max_bytes + 1), limits))
    if too_much := keeping_problem(sum(len(file.data) for file in checked), "attach it again"):
        raise attachments.AttachmentProblem(too_much)
    return checked


def file_response(info: dict, data: bytes):
    """A stored file as a response that a browser can only show (an image) or save, never run."""
    image = attachments.image_type(data) if info.get("kind") == "image" else None
    # Flask gives a text type its charset (utf-8) by itself: naming it here too would say it twice.
    mimetype = image or ("text/plain" if info.get("kind") == "text" else "application/octet-stream")
    response = send_file(
        io.BytesIO(data),
        mimetype=mimetype,
        as_attachment=image is None,
        download_name=attachments.safe_name(str(info.get("name") or "")),
        etag=False,
        max_age=86400,
    )
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.private = True
    response.cache_control.public = False
    return response
