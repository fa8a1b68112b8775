"""Blueprint "shares": making and revoking share links, and the shared page: the snapshot alone (no sidebar, no
socket, not indexed), working without JavaScript; whoever opens it can start their own copy. What a link is and
keeps is chatbot/chat/sharing.py."""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup

from chatbot.chat import sharing, transfer
from chatbot.chat.branches import Tree
from chatbot.stores.conversations import Conversation, Message
from chatbot.web.common import (
    chat_page,
    file_response,
    limited,
    own_conversation,
    problem_page,
    refused_new_chat,
    store,
)
from chatbot.web.security import owner_id

bp = Blueprint("shares", __name__)


@bp.app_template_filter("utc_time")
def utc_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


@bp.app_template_global("share_links")
def shown_links(conversation: Conversation) -> list[tuple[str, float | None]]:
    """(token, expires at) of the conversation's links, for its page: those made before, then the rest."""
    listed = [(token, link["expires_at"]) for token, link in sharing.conversation_links(store(), conversation)]
    return [*conversation.settings.get("shares", []), *listed]


@bp.app_template_global("tool_calls_in")
def tool_calls_in(messages: list[Message]) -> int:
    """How many tool calls the branch shown keeps: its share form then asks before what they returned is shared."""
    return sharing.tool_calls_in(messages)


@bp.post("/c/<conversation_id>/shares")
def make_link(conversation_id: str):
    conversation = own_conversation(conversation_id)
    branch = [m for m in Tree(store().messages(conversation)).chosen(conversation.leaf_id) if m.status != "streaming"]
    if not branch:
        return chat_page(conversation, "There is nothing to share yet: send a message first.", status=400)
    if too_many := sharing.too_many_links(store(), conversation, current_app.config):
        return chat_page(conversation, too_many, status=400)
    lifetime = sharing.LIFETIMES.get(request.form.get("expires", "never"), None)
    kept_mb, with_files = current_app.config["FILES_KEPT_MB"], bool(request.form.get("with_files"))
    with_tool_results = bool(request.form.get("with_tool_results"))
    try:
        token = sharing.share(
            store(), conversation, branch, lifetime, snapshot_page, kept_mb, with_files, with_tool_results
        )
    except sharing.ShareRefused as refused:
        return chat_page(conversation, str(refused), status=400)
    except sharing.ConversationGone:
        abort(404)
    link = url_for("shares.view", token=token, _external=True)
    return chat_page(conversation, f"Anyone with this link can read the chat as it is now: {link}", status=201)


@bp.post("/c/<conversation_id>/shares/<token>/revoke")
def revoke(conversation_id: str, token: str):
    sharing.unshare(store(), own_conversation(conversation_id), token)
    return redirect(url_for("pages.conversation", conversation_id=conversation_id))


@bp.get("/s/<token>")
def view(token: str):
    """The snapshot alone: no sidebar, no socket, not indexed."""
    found = shared(token)
    if found is None:
        abort(404)
    messages_page = Markup(found["page"] or older(found))
    page = render_template("shared.html", title=found["title"], messages_page=messages_page, token=token)
    return page, 200, {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


@bp.get("/s/<token>/files/<file_id>")
def shared_file(token: str, file_id: str):
    """A file of the snapshot, when its owner included them; nothing else of the conversation."""
    found = shared(token)
    if found is None or file_id not in found.get("file_ids", []):
        abort(404)
    stored = store().load_file(Conversation(id=found["conversation_id"], owner=""), file_id)  # read by its id
    if stored is None:
        abort(404)
    return file_response(*stored)


@bp.post("/s/<token>/copy")
def copy(token: str):
    """Start one's own conversation from the snapshot."""
    found = shared(token)
    if found is None:
        abort(404)
    if refused := limited("conversations"):
        return refused_new_chat(refused)
    data = found["snapshot"].encode()
    try:
        conversation = transfer.import_json(store(), owner_id(), data, current_app.config["MAX_MESSAGE_CHARS"])
    except transfer.ImportProblem as problem:  # a snapshot larger than this chat now takes, say
        return problem_page("This shared chat cannot be copied", str(problem), 400)
    return redirect(url_for("pages.conversation", conversation_id=conversation.id))


def shared(token: str) -> dict | None:
    """What the link shows (chatbot.chat.sharing.shared), its files at the link's own address."""
    return sharing.shared(store(), token, url_for("shares.view", token=token) + "/files/")


def snapshot_page(branch: list[Message], files_url: str) -> str:
    """The messages of a shared branch as the shared page shows them."""
    return render_template("chat/_messages.html", messages=branch, readonly=True, files_url=files_url)


def older(found: dict) -> str:
    """The page of a share made before shares kept it: from its snapshot (nothing, if it no longer reads)."""
    try:
        _, _, messages, chosen = transfer.read_export(
            found["snapshot"].encode(), current_app.config["MAX_MESSAGE_CHARS"]
        )
    except transfer.ImportProblem:
        return ""
    return render_template("chat/_messages.html", messages=Tree(messages).chosen(chosen), readonly=True)
