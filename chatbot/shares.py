"""Blueprint "shares": a read-only snapshot of a conversation at a link with an unguessable id, made and revoked
by its owner, optionally expiring. The shared page shows that snapshot alone (no sidebar, no socket, not
indexed) and works without JavaScript; whoever opens it can start their own copy.

A link is `<conversation id>.<secret>`: what it shows is kept with its conversation in the store, so it is
deleted and expires with it. A snapshot is kept once however many links show it, and counts with the files in
what its owner may keep (FILES_KEPT_MB); links are limited per chat and per person (SHARE_LINKS_PER_CHAT,
SHARE_LINKS_PER_PERSON). Links made before (a secret alone) are records of their own, still shown and revoked."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup

from chatbot import transfer
from chatbot.branches import Tree
from chatbot.conversations import Conversation, Message, Store
from chatbot.files import file_response
from chatbot.pages import chat_page, keeping_problem, limited, own_conversation, problem_page, refused_new_chat, store
from chatbot.security import owner_id

bp = Blueprint("shares", __name__)
KIND = "share"  # the records of links made before links were kept with their conversation
SEPARATOR = "."  # between a link's conversation id and its secret
FILES_AT = "/s/{link}/files/"  # where a snapshot's page points for its files, made the link's own when shown


class ShareRefused(Exception):
    """Why no link was made, in words for the owner."""


@bp.app_template_filter("utc_time")
def utc_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


LIFETIMES = {"never": None, "1": 86400, "7": 7 * 86400, "30": 30 * 86400}  # the form's choices, in days


def share(
    store: Store, conversation: Conversation, branch: list[Message], lifetime: float | None, with_files: bool = False
) -> str:
    """Snapshot `branch`, the one the conversation shows now (not its other versions): as JSON, for copies, and
    as the page shows it, rendered once rather than at every view, and kept once for every link that shows the
    same; its attached files served at the link only `with_files` (while the conversation keeps them). The new
    link's id; ShareRefused when a new snapshot would pass what the owner may keep."""
    token = f"{conversation.id}{SEPARATOR}{secrets.token_urlsafe(24)}"
    snapshot = transfer.as_json(conversation, Tree(branch))
    key = hashlib.sha256(f"{with_files}:{snapshot}".encode()).hexdigest()
    link = {"snapshot": key, "expires_at": time.time() + lifetime if lifetime else None, "made_at": time.time()}
    if store.save_share(conversation, token, link):  # an earlier link shows the same: this one shows it too
        return token
    files_url = FILES_AT if with_files else ""
    page = render_template("chat/_messages.html", messages=branch, readonly=True, files_url=files_url)
    kept = {"title": conversation.title, "snapshot": snapshot, "page": page}
    if with_files:
        listed = [f.get("id") for m in branch for f in m.meta.get("attachments", [])]
        kept["file_ids"] = [file_id for file_id in listed if file_id]
    if too_much := keeping_problem(len(json.dumps(kept).encode()), "make the link again"):
        raise ShareRefused(too_much)
    if not store.save_share(conversation, token, link, kept):  # deleted meanwhile
        abort(404)
    return token


def links(store: Store, owner: str) -> list[tuple[str, str, dict]]:
    """(conversation id, token, link) of the owner's links that have not expired, oldest first; expired ones are
    revoked on the way (when a chat page shows them, or a link is made), so that their snapshots are not kept."""
    found = sorted(store.share_links(owner), key=lambda each: each[2]["made_at"])
    for conversation_id, token, link in found:
        if expired(link):
            store.delete_share_link(Conversation(id=conversation_id, owner=owner), token)
    return [each for each in found if not expired(each[2])]


@bp.app_template_global("share_links")
def shown_links(conversation: Conversation) -> list[tuple[str, float | None]]:
    """(token, expires at) of the conversation's links, for its page: those made before, then the rest."""
    listed = [(token, link["expires_at"]) for token, link in _links(store(), conversation)]
    return [*conversation.settings.get("shares", []), *listed]


def _links(store: Store, conversation: Conversation) -> list[tuple[str, dict]]:
    return [(token, link) for where, token, link in links(store, conversation.owner) if where == conversation.id]


def too_many_links(store: Store, conversation: Conversation, config: dict) -> str | None:
    """Why the conversation cannot have one more link (SHARE_LINKS_PER_CHAT, SHARE_LINKS_PER_PERSON), in words."""
    everywhere = links(store, conversation.owner)
    here = sum(1 for where, _, _ in everywhere if where == conversation.id)
    per_chat, per_person = config["SHARE_LINKS_PER_CHAT"], config["SHARE_LINKS_PER_PERSON"]
    if per_chat and here >= per_chat:
        return (
            f"This chat has {here} share links, as many as a chat may have. Revoke one you no longer need (under "
            "Rename, export or delete), then make the link again."
        )
    if per_person and len(everywhere) >= per_person:
        return (
            f"Your chats have {len(everywhere)} share links, as many as this chat keeps for each person. Revoke "
            "links you no longer need, or delete chats, then make the link again."
        )
    return None


def unshare(store: Store, conversation: Conversation, token: str | None = None) -> None:
    """Revoke one of the conversation's links, or (token None) all of them."""
    for each, _ in _links(store, conversation):
        if token in (None, each):
            store.delete_share_link(conversation, each)
    older_links = conversation.settings.get("shares", [])
    if any(token in (None, each) for each, _ in older_links):
        for each, _ in older_links:
            if token in (None, each):
                store.delete_record(KIND, each)
        conversation.settings["shares"] = [link for link in older_links if token is not None and link[0] != token]
        store.update_conversation(conversation)


def expired(link: dict) -> bool:
    return bool(link["expires_at"]) and link["expires_at"] < time.time()


def shared(store: Store, token: str) -> dict | None:
    """What a link shows (title, snapshot, page, file_ids with the conversation_id), while it is neither revoked
    nor expired, nor gone with its conversation."""
    conversation_id, separator, _ = token.partition(SEPARATOR)
    if not separator:
        return _made_before(store, token)
    found = store.load_share(conversation_id, token)
    if found is None or expired(found[0]):
        return None
    snapshot = found[1]
    page = snapshot["page"].replace(FILES_AT, url_for("shares.view", token=token) + "/files/")
    return {**snapshot, "page": page, "conversation_id": conversation_id}


def _made_before(store: Store, token: str) -> dict | None:
    """What a link made before links were kept with their conversation shows."""
    found = store.load_record(KIND, token)
    if found is None or expired(found):
        return None
    return {**found, "title": json.loads(found["snapshot"])["title"], "page": found.get("page") or older(found)}


@bp.post("/c/<conversation_id>/shares")
def make_link(conversation_id: str):
    conversation = own_conversation(conversation_id)
    branch = [m for m in Tree(store().messages(conversation)).chosen(conversation.leaf_id) if m.status != "streaming"]
    if not branch:
        return chat_page(conversation, "There is nothing to share yet: send a message first.", status=400)
    if too_many := too_many_links(store(), conversation, current_app.config):
        return chat_page(conversation, too_many, status=400)
    lifetime = LIFETIMES.get(request.form.get("expires", "never"), None)
    try:
        token = share(store(), conversation, branch, lifetime, with_files=bool(request.form.get("with_files")))
    except ShareRefused as refused:
        return chat_page(conversation, str(refused), status=400)
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
    page = render_template("shared.html", title=found["title"], messages_page=Markup(found["page"]), token=token)
    return page, 200, {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


@bp.get("/s/<token>/files/<file_id>")
def shared_file(token: str, file_id: str):
    """A file of the snapshot, when its owner included them; nothing else of the conversation."""
    found = shared(store(), token)
    if found is None or file_id not in found.get("file_ids", []):
        abort(404)
    stored = store().load_file(Conversation(id=found["conversation_id"], owner=""), file_id)  # read by its id
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
