"""Share links: a read-only snapshot of a conversation's branch at a link with an unguessable id, made and revoked
by its owner, optionally expiring (the web side is chatbot/web/shares.py).

A link is `<conversation id>.<secret>`: what it shows is kept with its conversation in the store, so it is
deleted and expires with it. A snapshot is kept once however many links show it, and counts with the files in
what its owner may keep (FILES_KEPT_MB); links are limited per chat and per person (SHARE_LINKS_PER_CHAT,
SHARE_LINKS_PER_PERSON). A branch whose answers called tools is shared only when its owner says so: what the tools
returned is another server's text, and may be private. Links made before (a secret alone) are records of their
own, still shown and revoked."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from chatbot.chat import limits, transfer
from chatbot.chat.branches import Tree
from chatbot.stores.conversations import Conversation, Message, Store

KIND = "share"  # the records of links made before links were kept with their conversation
SEPARATOR = "."  # between a link's conversation id and its secret
FILES_AT = "/s/{link}/files/"  # where a snapshot's page points for its files, made the link's own when shown
LIFETIMES = {"never": None, "1": 86400, "7": 7 * 86400, "30": 30 * 86400}  # the form's choices, in days


class ConversationGone(Exception):
    """The conversation was deleted while its link was being made."""


class ShareRefused(Exception):
    """Why no link was made, in words for the owner."""


def share(
    store: Store,
    conversation: Conversation,
    branch: list[Message],
    lifetime: float | None,
    render: Callable[[list[Message], str], str],
    kept_mb: float,
    with_files: bool = False,
    with_tool_results: bool = False,
) -> str:
    """Snapshot `branch`, the one the conversation shows now (not its other versions): as JSON, for copies, and
    as the page shows it, rendered once rather than at every view, and kept once for every link that shows the
    same; its attached files served at the link only `with_files` (while the conversation keeps them). The new
    link's id; ShareRefused when its answers called tools and the owner did not say `with_tool_results`, or when a
    new snapshot would pass what the owner may keep (`kept_mb`, FILES_KEPT_MB), ConversationGone when it was
    deleted meanwhile. `render(branch, files_url)` is the page's HTML of a branch."""
    if tool_calls_in(branch) and not with_tool_results:
        raise ShareRefused(
            "This chat's answers called tools, and a link would show anyone who has it what the tools returned. "
            'Tick "Share with what its tools returned" if they may read it, then make the link again.'
        )
    token = f"{conversation.id}{SEPARATOR}{secrets.token_urlsafe(24)}"
    snapshot = transfer.as_json(conversation, Tree(branch))
    key = hashlib.sha256(f"{with_files}:{snapshot}".encode()).hexdigest()
    link = {"snapshot": key, "expires_at": time.time() + lifetime if lifetime else None, "made_at": time.time()}
    if store.save_share(conversation, token, link):  # an earlier link shows the same: this one shows it too
        return token
    files_url = FILES_AT if with_files else ""
    page = render(branch, files_url)
    kept: dict[str, Any] = {"title": conversation.title, "snapshot": snapshot, "page": page}
    if with_files:
        listed = [f.get("id") for m in branch for f in m.meta.get("attachments", [])]
        kept["file_ids"] = [file_id for file_id in listed if file_id]
    adding = len(json.dumps(kept).encode())
    if too_much := limits.keeping_problem(store, conversation.owner, kept_mb, adding, "make the link again"):
        raise ShareRefused(too_much)
    if not store.save_share(conversation, token, link, kept):  # deleted meanwhile
        raise ConversationGone
    return token


def tool_calls_in(branch: list[Message]) -> int:
    """How many tool calls the answers of `branch` keep, each with what its tool returned."""
    return sum(len(message.meta.get("tool_calls", [])) for message in branch)


def links(store: Store, owner: str) -> list[tuple[str, str, dict]]:
    """(conversation id, token, link) of the owner's links that have not expired, oldest first; expired ones are
    revoked on the way (when a chat page shows them, or a link is made), so that their snapshots are not kept."""
    found = sorted(store.share_links(owner), key=lambda each: each[2]["made_at"])
    for conversation_id, token, link in found:
        if expired(link):
            store.delete_share_link(Conversation(id=conversation_id, owner=owner), token)
    return [each for each in found if not expired(each[2])]


def conversation_links(store: Store, conversation: Conversation) -> list[tuple[str, dict]]:
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
    for each, _ in conversation_links(store, conversation):
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


def shared(store: Store, token: str, files_url: str = "") -> dict | None:
    """What a link shows (title, snapshot, page, file_ids with the conversation_id), while it is neither revoked
    nor expired, nor gone with its conversation; its page names its files at `files_url`. A link made before links
    were kept with their conversation may have no page ("")."""
    conversation_id, separator, _ = token.partition(SEPARATOR)
    if not separator:
        return _made_before(store, token)
    found = store.load_share(conversation_id, token)
    if found is None or expired(found[0]):
        return None
    snapshot = found[1]
    page = snapshot["page"].replace(FILES_AT, files_url)
    return {**snapshot, "page": page, "conversation_id": conversation_id}


def _made_before(store: Store, token: str) -> dict | None:
    """What a link made before links were kept with their conversation shows."""
    found = store.load_record(KIND, token)
    if found is None or expired(found):
        return None
    return {**found, "title": json.loads(found["snapshot"])["title"], "page": found.get("page") or ""}
