"""Everything the chat keeps, in one archive: backed up while the chat runs, restored into an empty store of any
kind, so a chat moves from SQLite to PostgreSQL (or anywhere) with two commands (`flask backup`, `flask restore`).

The archive is gzip'd JSON, one document a line: first what it is and its version, then every record (accounts
with their password hashes, invitations, the site's settings and limits, and the rest) and every conversation
with all its branches, its files and its share links with their snapshots. Records and conversations are sorted,
so two backups of the same things are the same but for the time in their first line. An answer being written is
archived as interrupted, with what arrived: a restored store has nothing writing it. What each person used of the
limits this hour (the counters) is not kept: it starts again.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from chatbot.chat.running import interrupt
from chatbot.stores.conversations import Conversation, Message, Store

FORMAT = "chatbot archive"
VERSION = 1  # a change of what an archive holds is a new version; restore reads every earlier one


class ArchiveProblem(Exception):
    """An archive that cannot be restored here; str() says why and what to do, for whoever runs the chat."""


def back_up(store: Store, path: str) -> Counter[str]:
    """Write everything `store` keeps to the archive at `path` (whole or not at all); how many of each were written."""
    written: Counter[str] = Counter()
    partial = f"{path}.partial"
    with gzip.open(partial, "wt", encoding="utf-8") as archive:
        for entry in entries(store):
            archive.write(json.dumps(entry, sort_keys=True) + "\n")
            _count(written, entry)
    os.replace(partial, path)
    return written


def entries(store: Store) -> Iterator[dict[str, Any]]:
    """The archive's documents: what it is, then each record, then each conversation."""
    yield {"format": FORMAT, "version": VERSION, "made_at": time.time()}
    for kind, key, data in sorted(store.every_record(), key=lambda record: (record[0], record[1])):
        yield {"record": {"kind": kind, "key": key, "data": data}}
    links: dict[str, list[tuple[str, str, dict]]] = {}  # by owner, read once for all their conversations
    for conversation in sorted(store.every_conversation(), key=lambda c: c.id):
        if conversation.owner not in links:
            links[conversation.owner] = store.share_links(conversation.owner)
        yield {"conversation": _conversation(store, conversation, links[conversation.owner])}


def _conversation(store: Store, conversation: Conversation, links: list[tuple[str, str, dict]]) -> dict[str, Any]:
    messages = store.messages(conversation)
    for message in messages:
        if message.status == "streaming":
            interrupt(message)
    shares, snapshots = {}, {}
    for conversation_id, token, _ in links:
        found = store.load_share(conversation_id, token) if conversation_id == conversation.id else None
        if found:  # not revoked meanwhile
            link, snapshot = found
            shares[token], snapshots[link["snapshot"]] = link, snapshot
    files = sorted(store.files_of(conversation), key=lambda file: file[0])
    return {
        **asdict(conversation),
        "messages": [asdict(message) for message in messages],
        "files": [{"id": id_, "info": info, "data": base64.b64encode(data).decode()} for id_, info, data in files],
        "shares": shares,
        "snapshots": snapshots,
    }


def restore(store: Store, path: str) -> Counter[str]:
    """Load the archive at `path` into `store`, which must be empty; how many of each were restored."""
    if store.every_record() or store.every_conversation():
        raise ArchiveProblem(
            "The chat's store is not empty: a restore loads an archive into an empty store only, so that nothing "
            "kept is mixed or overwritten. Point CHAT_STORE_URL at a new, empty store and restore into that."
        )
    restored: Counter[str] = Counter()
    for entry in _read(path):
        if "record" in entry:
            record = entry["record"]
            store.save_record(record["kind"], record["key"], record["data"])
        else:
            _restore_conversation(store, entry["conversation"])
        _count(restored, entry)
    return restored


def _restore_conversation(store: Store, kept: dict[str, Any]) -> None:
    fields = {name: kept[name] for name in Conversation.__dataclass_fields__}
    conversation = Conversation(**fields)
    store.restore_conversation(conversation, [])  # first, for its files and shares to belong to
    for file in kept["files"]:
        store.save_file(conversation, file["id"], file["info"], base64.b64decode(file["data"]))
    for token, link in sorted(kept["shares"].items()):
        store.save_share(conversation, token, link, kept["snapshots"][link["snapshot"]])
    store.restore_conversation(conversation, [Message(**message) for message in kept["messages"]])  # its times too


def _read(path: str) -> Iterator[dict[str, Any]]:
    """The documents of the archive at `path` after its first line, once that says it is one this chat reads."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as archive:
            head = json.loads(archive.readline() or "{}")
            if head.get("format") != FORMAT:
                raise ArchiveProblem(f"{path} is not an archive of the chat (`flask backup` makes them).")
            if head.get("version", 0) > VERSION:
                raise ArchiveProblem(
                    f"{path} was made by a newer chat (archive version {head['version']}; this chat reads up to "
                    f"{VERSION}): restore it with that version, or a newer one."
                )
            for line in archive:
                yield json.loads(line)
    except (OSError, EOFError, ValueError) as error:  # not gzip, cut short, not JSON
        raise ArchiveProblem(f"{path} cannot be read as an archive of the chat: {error}") from error


def _count(counts: Counter[str], entry: dict[str, Any]) -> None:
    if "record" in entry:
        counts[entry["record"]["kind"] + " records"] += 1
    elif "conversation" in entry:
        kept = entry["conversation"]
        counts.update(conversations=1, messages=len(kept["messages"]), files=len(kept["files"]))
        counts["share links"] += len(kept["shares"])
