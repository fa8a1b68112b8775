"""The PostgreSQL store's tables, as numbered steps applied once each, in order, at start-up.

A database remembers the steps it has had in `schema_versions`. Whoever starts first takes a transaction-wide
advisory lock, applies the steps the database lacks and records them in the same transaction; a host starting at
the same moment waits for the lock, then finds nothing left to do. A change of the tables is a new step at the end
of STEPS, never an edit of one already released: a database made by any earlier version is brought up to date.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

MIGRATION_LOCK = 7_311_842_022  # the advisory lock key that start-ups migrate under (any fixed number of ours)


@dataclass(frozen=True)
class Step:
    version: int
    why: str
    sql: str


STEPS = (
    Step(
        1,
        "conversations, messages, answers' parts, files, share links, records, counters and stop signals",
        """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    leaf_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX conversations_by_owner ON conversations (owner, updated_at);
CREATE INDEX conversations_by_activity ON conversations (updated_at);
CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    html TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    meta TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    parent_id TEXT
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX answers_being_written ON messages (conversation_id) WHERE status = 'streaming';
CREATE TABLE answer_parts (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    text TEXT NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, start)
);
CREATE TABLE files (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    info TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE TABLE snapshots (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conversation_id, key)
);
CREATE TABLE share_links (
    token TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    data TEXT NOT NULL,
    FOREIGN KEY (conversation_id, snapshot) REFERENCES snapshots (conversation_id, key) ON DELETE CASCADE
);
CREATE INDEX share_links_by_snapshot ON share_links (conversation_id, snapshot);
CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE counts (key TEXT PRIMARY KEY, total BIGINT NOT NULL, ends_at DOUBLE PRECISION NOT NULL);
CREATE INDEX counts_by_end ON counts (ends_at);
CREATE TABLE stop_requests (message_id TEXT PRIMARY KEY, requested_at DOUBLE PRECISION NOT NULL);
""",
    ),
)


class NewerDatabase(Exception):
    """The database has steps this version of the chat does not know: a newer chat made it."""


def migrate(db: psycopg.Connection, steps: tuple[Step, ...] = STEPS) -> list[int]:
    """Bring the database that `db` (in autocommit) is connected to up to the last of `steps`, under the lock;
    the versions it applied (none when another start-up did, or had)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (version INTEGER PRIMARY KEY, why TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = db.execute("SELECT coalesce(max(version), 0) FROM schema_versions").fetchone()
        current = row[0] if row else 0
        if steps and current > steps[-1].version:
            raise NewerDatabase(
                f"the database is at version {current} of the chat's tables, and this chat knows up to version "
                f"{steps[-1].version}: a newer chat made it. Run that version, or a newer one."
            )
        applied = []
        for step in steps:
            if step.version > current:
                db.execute(step.sql)
                db.execute("INSERT INTO schema_versions (version, why) VALUES (%s, %s)", (step.version, step.why))
                applied.append(step.version)
        return applied
