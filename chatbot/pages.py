"""Blueprint "pages": every HTML route."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, session, url_for

from chatbot import accounts, attachments, limits, live_markdown, picker, reasoning, transfer
from chatbot.attachments import AttachmentProblem
from chatbot.branches import Tree
from chatbot.conversations import Conversation, Store
from chatbot.generation import (
    WAIT,
    AnswerRunning,
    can_edit,
    files_to_send,
    message_problem,
    pick_model,
    run_continuation,
    run_regeneration,
    run_reply,
    running_answer,
    save_conversation_settings,
    settings_for_conversation,
)
from chatbot.security import owner_id
from chatbot.stores.failures import StoreUnavailable

bp = Blueprint("pages", __name__)
TITLE_LIMIT = 200


bp.add_app_template_global(reasoning.thought_for, "thought_for")
bp.add_app_template_global(reasoning.label, "reasoning_label")


@bp.app_template_global("split_reasoning")
def split_reasoning(content: str) -> tuple[str, str]:
    """(reasoning, answer) of an answer being written, for the page."""
    return reasoning.split(content)


bp.add_app_template_global(live_markdown.rendered, "live_markdown")


def store() -> Store:
    return current_app.extensions["chat_store"]


def own_conversation(conversation_id: str) -> Conversation:
    """The session's conversation, or 404: someone else's id reveals nothing."""
    conversation = store().get_conversation(owner_id(), conversation_id)
    if conversation is None:
        abort(404)
    return conversation


def chat_page(
    conversation: Conversation, notice: str = "", draft: str = "", status: int = 200, files: list[dict] | tuple = ()
):
    """The chat page; `draft` in the box and `files` (as stored) attached to it, when a message was refused."""
    query = request.args.get("q", "").strip()
    listed = store().search_conversations(conversation.owner, query) if query else None
    config = visible_config()
    tree = Tree(store().messages(conversation))
    choices = picker.choices(config)
    return render_template(
        "chat/page.html",
        conversation=conversation,
        conversations=listed if listed is not None else store().list_conversations(conversation.owner),
        query=query,
        messages=tree.chosen(conversation.leaf_id),
        tree=tree,
        busy=running_answer(tree.messages) is not None,
        choices=choices,
        listed=picker.matching(choices),
        chosen=picker.choice(config, conversation.settings.get("model")),
        settings=settings_for_conversation(conversation, config),
        notice=notice or (session.pop("notice") if "notice" in session else ""),  # one left for it at sign-in
        draft=draft,
        chosen_files=[attachments.listed(info) for info in files],
        left=limits.left(store(), conversation.owner, own_limits) if (own_limits := account_limits()) else "",
    ), status


def visible_config() -> dict:
    """The configuration as the signed-in account sees it (only the models it may pick)."""
    return picker.for_account(current_app.config, g.get("account"))


def keeping_problem(adding: int, then: str) -> str | None:
    """Why `adding` more bytes of files or share snapshots cannot be kept for this visitor (FILES_KEPT_MB in all
    their chats), in words that end with what to do `then`."""
    limit = current_app.config["FILES_KEPT_MB"]
    if not limit or not adding:
        return None
    kept = store().kept_size(owner_id())
    if kept + adding <= limit * 1024 * 1024:
        return None
    return (
        f"Your chats keep {attachments.megabytes(kept)} of attached files and shared snapshots, and with"
        f" {attachments.megabytes(adding)} more they would pass the {limit:g} MB this chat keeps for each person."
        f" Delete chats, or revoke share links, that you no longer need, then {then}."
    )


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
    from chatbot.shares import unshare  # the links go with it; shares reads pages' helpers

    conversation = own_conversation(conversation_id)
    unshare(store(), conversation)
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


@bp.app_errorhandler(404)
def not_found(_error):  # type: ignore[no-untyped-def]
    """Someone else's id, a deleted chat and an expired one look the same: nothing is revealed."""
    days = current_app.config["SESSION_IDLE_DAYS"]
    return render_template("not_found.html", days=days), 404


@bp.app_errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable):  # type: ignore[no-untyped-def]
    current_app.logger.error("the store failed: %s", error.__cause__ or error)
    page, status = problem_page("The chat cannot read or save conversations right now", str(error), 503)
    return page, status, {"Retry-After": "10"}


@bp.app_errorhandler(413)
def too_large(_error):  # type: ignore[no-untyped-def]
    limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return (
        f"That upload is larger than {limit} MB. Go back and choose a smaller file.",
        413,
        {"Content-Type": "text/plain; charset=utf-8"},
    )


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
    from chatbot.files import uploads  # files reads pages' helpers

    settings = settings_for_conversation(conversation, visible_config())
    limit = current_app.config["MAX_ATTACHMENTS"]
    ids = request.form.getlist("attachment")
    return files_to_send(store(), conversation, ids, text, settings, limit, uploads("files"))
