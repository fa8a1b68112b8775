"""Blueprint "pages": every HTML route."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for

from chatbot.chat import picker, sharing, transfer
from chatbot.chat.attachments import AttachmentProblem
from chatbot.chat.branches import Tree
from chatbot.chat.message_checks import can_edit, files_to_send, message_problem
from chatbot.chat.replies import run_continuation, run_regeneration, run_reply
from chatbot.chat.reply_settings import pick_model, save_conversation_settings, settings_for_conversation
from chatbot.chat.running import WAIT, AnswerRunning
from chatbot.stores.conversations import Conversation
from chatbot.web.common import (
    account_limits,
    chat_page,
    keeping_problem,
    limited,
    own_conversation,
    refused_new_chat,
    store,
    uploads,
    visible_config,
)
from chatbot.web.security import owner_id

bp = Blueprint("pages", __name__)
TITLE_LIMIT = 200


@bp.get("/")
def index():
    """The newest conversation of this browser, or a new one."""
    owner = owner_id()
    conversations = store().list_conversations(owner)
    if conversations:
        return redirect(url_for("pages.conversation", conversation_id=conversations[0].id))
    return new_conversation()


@bp.post("/c")
def new_conversation():
    if refused := limited("conversations"):
        return refused_new_chat(refused)
    conversation = store().create_conversation(owner_id())
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.get("/c/<conversation_id>")
def conversation(conversation_id: str):
    return chat_page(own_conversation(conversation_id))


@bp.get("/models")
def model_options():
    """The picker's options whose name holds what is typed in it (the page's script asks as the user types)."""
    return render_template(
        "chat/_model_options.html",
        listed=picker.matching(picker.choices(visible_config()), request.args.get("model", "")),
    )


@bp.post("/c/<conversation_id>/rename")
def rename(conversation_id: str):
    conversation = own_conversation(conversation_id)
    title = " ".join(request.form.get("title", "").split())[:TITLE_LIMIT]
    if title:
        conversation.title = title
        store().update_conversation(conversation)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.post("/c/<conversation_id>/settings")
def save_settings(conversation_id: str):
    conversation = own_conversation(conversation_id)
    try:
        save_conversation_settings(store(), conversation, request.form, visible_config())
    except ValueError as error:
        return chat_page(conversation, f"The settings were not saved: {error}.", status=400)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.post("/c/<conversation_id>/delete")
def delete(conversation_id: str):
    conversation = own_conversation(conversation_id)
    sharing.unshare(store(), conversation)
    store().delete_conversation(conversation)
    return redirect(url_for("pages.index"))


@bp.post("/c/<conversation_id>/regenerate")
def regenerate(conversation_id: str):
    """Answer the last question shown again, as a new branch (without JavaScript; the socket does the same)."""
    conversation, shown = own_conversation(conversation_id), request.form.get("after")
    return answered(conversation, lambda settings: run_regeneration(store(), conversation, settings, ignore, of=shown))


@bp.post("/c/<conversation_id>/continue")
def continue_answer(conversation_id: str):
    """Go on with an answer that stopped at the length limit (without JavaScript)."""
    conversation, shown = own_conversation(conversation_id), request.form.get("after")
    return answered(conversation, lambda settings: run_continuation(store(), conversation, settings, ignore, of=shown))


@bp.post("/c/<conversation_id>/branch")
def switch_branch(conversation_id: str):
    """Show another version of a message, and the branch that goes on from it (without JavaScript)."""
    conversation = own_conversation(conversation_id)
    tree = Tree(store().messages(conversation))
    message_id = request.form.get("message_id", "")
    if message_id not in tree.by_id:
        abort(404)
    store().choose_branch(conversation, tree.newest_leaf(message_id))
    return redirect(url_for("pages.conversation", conversation_id=conversation.id, _anchor=f"msg-{message_id}"))


@bp.post("/c/<conversation_id>/fork")
def fork(conversation_id: str):
    """A new chat holding a copy of the branch up to a message, with the same model and settings."""
    conversation = own_conversation(conversation_id)
    branch = Tree(store().messages(conversation)).path_to(request.form.get("message_id", ""))
    if not branch:
        abort(404)
    if refused := limited("conversations"):
        return chat_page(conversation, refused, status=429)
    files = sum(int(file.get("size") or 0) for message in branch for file in message.meta.get("attachments", []))
    if too_much := keeping_problem(files, "start the new chat again"):
        return chat_page(conversation, too_much, status=400)
    copy = transfer.copy_branch(store(), conversation, branch)
    return redirect(url_for("pages.conversation", conversation_id=copy.id, _anchor="end"))


@bp.post("/c/<conversation_id>/messages/<message_id>/edit")
def edit_message(conversation_id: str, message_id: str):
    """Send the edited text of an earlier message, beside it as a new branch (the original stays)."""
    conversation = own_conversation(conversation_id)
    text = request.form.get("message", "").strip()
    problem = message_problem(text, current_app.config["MAX_MESSAGE_CHARS"])
    if problem:
        return chat_page(conversation, problem, status=400)
    if not can_edit(store(), conversation, message_id):
        abort(404)
    return answered(
        conversation,
        lambda settings: run_reply(store(), conversation, text, settings, ignore, replacing=message_id),
        text,
    )


def answered(  # type: ignore[no-untyped-def]
    conversation: Conversation, reply, draft: str = "", files: list[dict] | tuple = ()
):
    """Run `reply(settings)` (one of generation's run_*) to the answer's end, then show the page at the answer;
    refused or busy, the page keeps `draft` in the box and the `files` (stored) attached to it."""
    if refused := limited("answers"):
        return chat_page(conversation, refused, draft=draft, status=429, files=files)
    try:
        reply(settings_for_conversation(conversation, visible_config(), account_limits()))
    except AnswerRunning:
        return chat_page(conversation, WAIT, draft=draft, status=409, files=files)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id, _anchor="end"))


@bp.get("/c/<conversation_id>/export.<kind>")
def export(conversation_id: str, kind: str):
    conversation = own_conversation(conversation_id)
    writers = {"md": (transfer.as_markdown, "text/markdown"), "json": (transfer.as_json, "application/json")}
    if kind not in writers:
        abort(404)
    write, mimetype = writers[kind]
    response = Response(write(conversation, Tree(store().messages(conversation))), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{transfer.file_name(conversation, kind)}"'
    return response


@bp.post("/import")
def import_conversation():
    """A JSON export becomes a new conversation, or nothing at all and a clear notice."""
    if refused := limited("conversations"):
        return refused_new_chat(refused)
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise transfer.ImportProblem("Choose a JSON file to import.")
        conversation = transfer.import_json(store(), owner_id(), upload.read(), current_app.config["MAX_MESSAGE_CHARS"])
    except transfer.ImportProblem as problem:
        current = store().list_conversations(owner_id())
        conversation = current[0] if current else store().create_conversation(owner_id())
        return chat_page(conversation, f"Nothing was imported: {problem}", status=400)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


def ignore(_event) -> None:  # type: ignore[no-untyped-def]
    """A page answers when the reply is whole: it needs no events."""


@bp.post("/c/<conversation_id>/messages")
def post_message(conversation_id: str):
    """The chat without JavaScript: the form posts, the page comes back with the whole answer."""
    conversation = own_conversation(conversation_id)
    text = request.form.get("message", "").strip()
    with_files = any(request.form.getlist("attachment")) or any(f.filename for f in request.files.getlist("files"))
    problem = message_problem(text, current_app.config["MAX_MESSAGE_CHARS"], with_files)
    if problem:
        return chat_page(conversation, problem, draft=text, status=400)
    pick_model(store(), conversation, request.form.get("model"), visible_config())
    try:
        files = attached(conversation, text)
    except AttachmentProblem as refused:
        return chat_page(conversation, str(refused), draft=text, status=400)
    after = request.form.get("after")
    return answered(
        conversation,
        lambda settings: run_reply(store(), conversation, text, settings, ignore, after=after, files=files),
        text,
        files,
    )


def attached(conversation: Conversation, text: str) -> list[dict]:
    """The files sent with the form's message: its uploads, and those the page's script uploaded before (named
    by id); AttachmentProblem says why they cannot go."""
    settings = settings_for_conversation(conversation, visible_config())
    limit = current_app.config["MAX_ATTACHMENTS"]
    ids = request.form.getlist("attachment")
    return files_to_send(store(), conversation, ids, text, settings, limit, uploads("files"))
