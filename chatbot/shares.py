"""Blueprint "shares": a read-only snapshot of a conversation at a link with an unguessable id, made and revoked
by its owner, optionally expiring. The shared page shows that snapshot alone (no sidebar, no socket, not
indexed) and works without JavaScript; whoever opens it can start their own copy."""

from __future__ import annotations

import json
import secrets
import time

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup

from chatbot import transfer
from chatbot.branches import Tree
from chatbot.conversations import Conversation, Message, Store
from chatbot.files import file_response
from chatbot.pages import chat_page, limited, own_conversation, problem_page, refused_new_chat, store
from chatbot.security import owner_id

bp = Blueprint("shares", __name__)
KIND = "share"


@bp.app_template_filter("utc_time")
def utc_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


LIFETIMES = {"never": None, "1": 86400, "7": 7 * 86400, "30": 30 * 86400}  # the form's choices, in days


def share(
    store: Store, conversation: Conversation, branch: list[Message], lifetime: float | None, with_files: bool = False
) -> str:
    """Snapshot `branch`, the one the conversation shows now (not its other versions): as JSON, for copies, and
    as the page shows it, rendered once here rather than at every view; its attached files served at the link
    only `with_files` (while the conversation keeps them). The new link's id."""
    token = secrets.token_urlsafe(24)
    expires_at = time.time() + lifetime if lifetime else None
    snapshot = transfer.as_json(conversation, Tree(branch))
    files_url = url_for("shares.view", token=token) + "/files/" if with_files else ""
    page = render_template("chat/_messages.html", messages=branch, readonly=True, files_url=files_url)
    record = {"owner": conversation.owner, "snapshot": snapshot, "page": page, "expires_at": expires_at}
    if with_files:
        listed = [f.get("id") for m in branch for f in m.meta.get("attachments", [])]
        record.update(conversation_id=conversation.id, file_ids=[file_id for file_id in listed if file_id])
    store.save_record(KIND, token, record)
    conversation.settings["shares"] = [*conversation.settings.get("shares", []), [token, expires_at]]
    store.update_conversation(conversation)
    return token


def unshare(store: Store, conversation: Conversation, token: str | None = None) -> None:
    """Revoke one of the conversation's links, or (token None) all of them."""
    links = conversation.settings.get("shares", [])
    for each, _ in links:
        if token in (None, each):
            store.delete_record(KIND, each)
    conversation.settings["shares"] = [link for link in links if token is not None and link[0] != token]
    store.update_conversation(conversation)


def shared(store: Store, token: str) -> dict | None:
    """The share behind a link, while it is neither revoked nor expired."""
    found = store.load_record(KIND, token)
    if found is None or (found["expires_at"] and found["expires_at"] < time.time()):
        return None
    return found


@bp.post("/c/<conversation_id>/shares")
def make_link(conversation_id: str):
    conversation = own_conversation(conversation_id)
    branch = [m for m in Tree(store().messages(conversation)).chosen(conversation.leaf_id) if m.status != "streaming"]
    if not branch:
        return chat_page(conversation, "There is nothing to share yet: send a message first.", status=400)
    lifetime = LIFETIMES.get(request.form.get("expires", "never"), None)
    token = share(store(), conversation, branch, lifetime, with_files=bool(request.form.get("with_files")))
    link = url_for("shares.view", token=token, _external=True)
    return chat_page(conversation, f"Anyone with this link can read the chat as it is now: {link}", status=201)


@bp.post("/c/<conversation_id>/shares/<token>/revoke")
def revoke(conversation_id: str, token: str):
    unshare(store(), own_conversation(conversation_id), token)
    return redirect(url_for("pages.conversation", conversation_id=conversation_id))


@bp.get("/s/<token>")
def view(token: str):
    """The snapshot alone: no sidebar, no socket, not indexed."""
    found = shared(store(), token)
    if found is None:
        abort(404)
    title = json.loads(found["snapshot"])["title"]
    page = render_template(
        "shared.html", title=title, messages_page=Markup(found.get("page") or older(found)), token=token
    )
    return page, 200, {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


@bp.get("/s/<token>/files/<file_id>")
def shared_file(token: str, file_id: str):
    """A file of the snapshot, when its owner included them; nothing else of the conversation."""
    found = shared(store(), token)
    if found is None or file_id not in found.get("file_ids", []):
        abort(404)
    conversation = Conversation(id=found["conversation_id"], owner=found["owner"])
    stored = store().load_file(conversation, file_id)
    if stored is None:
        abort(404)
    return file_response(*stored)


@bp.post("/s/<token>/copy")
def copy(token: str):
    """Start one's own conversation from the snapshot."""
    found = shared(store(), token)
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


def older(found: dict) -> str:
    """The page of a share made before shares kept it: from its snapshot (nothing, if it no longer reads)."""
    try:
        _, _, messages, chosen = transfer.read_export(
            found["snapshot"].encode(), current_app.config["MAX_MESSAGE_CHARS"]
        )
    except transfer.ImportProblem:
        return ""
    return render_template("chat/_messages.html", messages=Tree(messages).chosen(chosen), readonly=True)
