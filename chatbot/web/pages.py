"""Blueprint "pages": every HTML route."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, session, url_for

from chatbot.chat import actions, approvals, chat_list, defaults, picker, presets, reasoning, sharing, transfer
from chatbot.chat.actions import Refusal, Refused
from chatbot.chat.branches import Tree
from chatbot.chat.reply_settings import save_conversation_settings
from chatbot.stores.conversations import Conversation
from chatbot.web.common import (
    chat_page,
    limited,
    model_menu,
    own_conversation,
    refused_new_chat,
    store,
    uploads,
    visible_config,
    visitor,
)
from chatbot.web.security import owner_id

bp = Blueprint("pages", __name__)
TITLE_LIMIT = 200
REFUSAL_STATUS = {Refusal.INVALID: 400, Refusal.GONE: 404, Refusal.CONFLICT: 409, Refusal.LIMITED: 429}


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
    """A chat with no message yet: the visitor's own if they have one (pressing New chat twice makes one chat, not
    two), else a new one; with the preset picked, or what the visitor's new chats start with."""
    conversation = chat_list.empty_chat(store(), owner_id())
    if conversation is None:
        if refused := limited("conversations"):
            return refused_new_chat(refused)
        conversation = store().create_conversation(owner_id())
    preset = request.form.get("preset")
    if not preset or not presets.start(store(), conversation, visible_config(), preset):
        defaults.start(store(), conversation, visible_config())
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


@bp.get("/c/<conversation_id>/model-menu")
def model_menu_list(conversation_id: str):
    """The menu's models whose name holds what is typed in its search (without JavaScript the search reloads the
    page, with the menu open)."""
    conversation = own_conversation(conversation_id)
    menu = model_menu(conversation, visible_config(), request.args.get("models", ""))
    return render_template("chat/_model_list.html", conversation=conversation, **menu)


@bp.post("/c/<conversation_id>/model")
def pick_model(conversation_id: str):
    """Answer with another model from now on (the menu without JavaScript; the socket does the same)."""
    conversation = own_conversation(conversation_id)
    try:
        actions.pick(store(), conversation, visitor(), request.form.get("model", "").strip())
    except Refused as refused:
        return refused_page(conversation, refused)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.get("/c/<conversation_id>/messages/<message_id>.md")
def message_markdown(conversation_id: str, message_id: str):
    """A message's text as it was written (an answer's markdown, without its reasoning): what Copy copies."""
    message = store().read_message(own_conversation(conversation_id), message_id)
    if message is None:
        abort(404)
    text = reasoning.split(message.content)[1] if message.role == "assistant" else message.content
    return Response(text, mimetype="text/markdown")


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
        switches = request.form.getlist("tools_on") if "tool_switches" in request.form else None
        save_conversation_settings(store(), conversation, request.form, visible_config(), switches)
    except ValueError as error:
        return chat_page(conversation, f"The settings were not saved: {error}.", status=400)
    defaults.used(store(), conversation)
    if request.form.get("as_default"):
        defaults.set_default(store(), conversation)
        session["notice"] = "Saved. Your new chats start with this model and these settings."
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.post("/c/<conversation_id>/presets")
def save_preset(conversation_id: str):
    """Keep this chat's model and settings as a preset to start new chats from (an admin's, for everyone)."""
    conversation = own_conversation(conversation_id)
    account = g.get("account")
    share = bool(request.form.get("share")) and account is not None and account.admin
    try:
        preset = presets.save(store(), conversation, request.form.get("name", ""), share)
    except ValueError as error:
        return chat_page(conversation, f"The preset was not saved: {error}.", status=400)
    session["notice"] = f"Saved the preset {preset.name}{' for everyone' if share else ''}: New chat can start from it."
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.post("/c/<conversation_id>/presets/delete")
def delete_preset(conversation_id: str):
    conversation = own_conversation(conversation_id)
    account = g.get("account")
    admin = account is not None and account.admin
    presets.delete(store(), conversation.owner, request.form.get("preset", ""), admin)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


@bp.get("/c/<conversation_id>/delete")
def confirm_delete(conversation_id: str):
    """Delete's question, as a page (the chat page asks it in a dialog when it has JavaScript)."""
    return render_template("chat/delete.html", conversation=own_conversation(conversation_id))


@bp.post("/c/<conversation_id>/delete")
def delete(conversation_id: str):
    conversation = own_conversation(conversation_id)
    sharing.unshare(store(), conversation)
    store().delete_conversation(conversation)
    return redirect(url_for("pages.index"))


@bp.post("/c/<conversation_id>/regenerate")
def regenerate(conversation_id: str):
    """Answer the last question shown again, as a new branch (without JavaScript; the socket does the same)."""
    conversation = own_conversation(conversation_id)
    after, model = request.form.get("after"), request.form.get("model", "").strip()
    return answered(conversation, lambda: actions.regenerate(store(), conversation, visitor(), after, model))


@bp.post("/c/<conversation_id>/continue")
def continue_answer(conversation_id: str):
    """Go on with an answer that stopped at the length limit (without JavaScript)."""
    conversation = own_conversation(conversation_id)
    after = request.form.get("after")
    return answered(conversation, lambda: actions.continue_answer(store(), conversation, visitor(), after))


@bp.post("/c/<conversation_id>/branch")
def switch_branch(conversation_id: str):
    """Show another version of a message, and the branch that goes on from it (without JavaScript)."""
    conversation = own_conversation(conversation_id)
    message_id = request.form.get("message_id", "")
    try:
        actions.switch_branch(store(), conversation, message_id)
    except Refused as refused:
        return refused_page(conversation, refused)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id, _anchor=f"msg-{message_id}"))


@bp.post("/c/<conversation_id>/fork")
def fork(conversation_id: str):
    """A new chat holding a copy of the branch up to a message, with the same model and settings."""
    conversation = own_conversation(conversation_id)
    try:
        copy = actions.new_chat_from_here(store(), conversation, visitor(), request.form.get("message_id", ""))
    except Refused as refused:
        return refused_page(conversation, refused)
    return redirect(url_for("pages.conversation", conversation_id=copy.id, _anchor="end"))


@bp.get("/c/<conversation_id>/m/<message_id>/edit")
def edit_page(conversation_id: str, message_id: str):
    """A question's edit form as a page of its own: what its Edit opens without JavaScript (the chat page's script
    opens the same form in place). It posts to edit_message."""
    conversation = own_conversation(conversation_id)
    message = store().read_message(conversation, message_id)
    if message is None or message.role != "user":
        abort(404)
    return render_template("chat/edit.html", conversation=conversation, message=message)


@bp.post("/c/<conversation_id>/messages/<message_id>/edit")
def edit_message(conversation_id: str, message_id: str):
    """Send the edited text of an earlier message, beside it as a new branch (the original stays)."""
    conversation = own_conversation(conversation_id)
    text, model = request.form.get("message", "").strip(), request.form.get("model", "").strip()
    return answered(conversation, lambda: actions.edit(store(), conversation, visitor(), message_id, text, model), text)


@bp.post("/c/<conversation_id>/messages/<message_id>/approval")
def answer_tool_call(conversation_id: str, message_id: str):
    """Run once, Always for this tool, or Deny on a tool call's card (without JavaScript; the socket does the same);
    the page comes back once the answer has ended or waits on another card."""
    conversation = own_conversation(conversation_id)
    card = request.form.get("card", "")
    try:
        actions.answer_tool_call(store(), conversation, message_id, card, request.form.get("decision", ""))
    except Refused as refused:
        return refused_page(conversation, refused)
    approvals.wait_past(store(), conversation, message_id, card)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id, _anchor="end"))


@bp.post("/c/<conversation_id>/tools/revoke")
def revoke_tool(conversation_id: str):
    """A tool allowed always (on a card) asks first again, in every chat of its owner."""
    conversation = own_conversation(conversation_id)
    approvals.revoke(store(), conversation.owner, request.form.get("tool", ""))
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


def answered(conversation: Conversation, action: Callable[[], actions.Reply], draft: str = ""):
    """Do the `action` and write its answer, then show the page at the answer once it has ended or waits on a
    tool call's card; refused, the page keeps `draft` in the box and the files (stored) attached to it."""
    try:
        action().write_until_asked()
    except Refused as refused:
        return refused_page(conversation, refused, draft)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id, _anchor="end"))


def refused_page(conversation: Conversation, refused: Refused, draft: str = ""):
    """The chat page that says why (the not-found page when what the form names is not there)."""
    if refused.kind is Refusal.GONE:
        abort(404)
    return chat_page(conversation, str(refused), draft=draft, status=REFUSAL_STATUS[refused.kind], files=refused.files)


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


@bp.post("/c/<conversation_id>/messages")
def post_message(conversation_id: str):
    """The chat without JavaScript: the form posts, the page comes back with the whole answer (or the card of a
    tool call that waits for a yes)."""
    conversation = own_conversation(conversation_id)
    text = request.form.get("message", "").strip()
    uploading = any(f.filename for f in request.files.getlist("files"))
    return answered(
        conversation,
        lambda: actions.send(
            store(),
            conversation,
            visitor(),
            text,
            after=request.form.get("after"),
            model=request.form.get("model", "").strip(),
            file_ids=[file_id for file_id in request.form.getlist("attachment") if file_id],
            uploads=partial(uploads, "files") if uploading else None,
        ),
        text,
    )
