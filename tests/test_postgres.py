"""What only the PostgreSQL store has: its tables' numbered steps, applied once each at start-up however many hosts
start at once and from whichever earlier version, and text PostgreSQL cannot keep as it is."""

import subprocess
import sys
import time

import psycopg
import pytest

from chatbot.stores.conversations import Message, new_id
from chatbot.stores.failures import StoreUnavailable
from chatbot.stores.postgres import PostgresStore
from chatbot.stores.postgres_schema import STEPS, Step, migrate
from tests import postgres
from tests.servers import ROOT

PINNED = Step(STEPS[-1].version + 1, "a test's step: chats can be pinned", "ALTER TABLE conversations ADD pinned INT")


@pytest.fixture
def schema_url(postgres_database):
    with postgres.new_schema(f"test_{new_id().lower().replace('-', '_')}", postgres_database) as url:
        yield url


def versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT version, why FROM schema_versions ORDER BY version").fetchall()


def test_the_steps_are_numbered_one_by_one_from_one():
    assert [step.version for step in STEPS] == list(range(1, len(STEPS) + 1))


def test_six_hosts_starting_at_once_on_a_new_database_migrate_it_once(schema_url):
    start = time.time() + 2  # after every process has imported the store
    code = (
        "import sys, time\n"
        "from chatbot.stores.postgres import PostgresStore\n"
        f"while time.time() < {start}: pass\n"
        f"PostgresStore({schema_url!r}).close()\n"
    )
    hosts = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(6)]
    complaints = [host.communicate(timeout=60)[1].decode() for host in hosts]
    assert [said for host, said in zip(hosts, complaints, strict=True) if host.returncode] == []
    assert versions(schema_url) == [(step.version, step.why) for step in STEPS]  # each applied once


@pytest.mark.parametrize("earlier", range(len(STEPS)))
def test_a_database_of_every_earlier_version_is_brought_up_to_date_and_keeps_its_chats(schema_url, earlier):
    with psycopg.connect(schema_url, autocommit=True) as db:
        migrate(db, STEPS[:earlier])
        if earlier:  # a chat kept by that version
            db.execute("INSERT INTO conversations VALUES ('kept', 'alice', 'Old', 1, 1, '{}', '')")
    store = PostgresStore(schema_url)
    try:
        assert [version for version, _ in versions(schema_url)] == [step.version for step in STEPS]
        assert [c.id for c in store.list_conversations("alice")] == (["kept"] if earlier else [])
        conversation = store.create_conversation("alice")
        store.add_message(Message(new_id(), conversation.id, "user", "Works"))
        assert [m.content for m in store.messages(conversation)] == ["Works"]
    finally:
        store.close()


def test_a_new_step_is_applied_once_after_the_earlier_ones_and_the_data_stays(schema_url):
    with psycopg.connect(schema_url, autocommit=True) as db:
        assert migrate(db, STEPS) == [step.version for step in STEPS]
        db.execute("INSERT INTO conversations VALUES ('kept', 'alice', 'Old', 1, 1, '{}', '')")
        assert migrate(db, (*STEPS, PINNED)) == [PINNED.version]
        assert migrate(db, (*STEPS, PINNED)) == []  # the next start-up: nothing left to do
        assert db.execute("SELECT id, pinned FROM conversations").fetchall() == [("kept", None)]
    assert versions(schema_url)[-1] == (PINNED.version, PINNED.why)


def test_a_database_made_by_a_newer_chat_is_refused_in_words(schema_url):
    with psycopg.connect(schema_url, autocommit=True) as db:
        migrate(db, (*STEPS, PINNED))
    with pytest.raises(StoreUnavailable, match=rf"at version {PINNED.version} .* a newer chat made it"):
        PostgresStore(schema_url)


def test_a_postgresql_that_does_not_answer_at_start_up_is_told_in_words():
    with pytest.raises(StoreUnavailable, match=r"PostgreSQL at 127.0.0.1:1/chat\) does not answer"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/chat")


def test_a_nul_character_postgresql_cannot_keep_is_saved_as_a_replacement_not_refused(schema_url):
    store = PostgresStore(schema_url)
    try:
        conversation = store.create_conversation("alice", "Nul\x00title")
        store.add_message(Message(new_id(), conversation.id, "user", "a\x00b", meta={"note": "c\x00d"}))
        answer = store.add_message(Message(new_id(), conversation.id, "assistant", "", status="streaming"))
        assert store.append_to_answer(answer, 0, "e\x00f") is False
        assert [m.content for m in store.messages(conversation)] == ["a\ufffdb", "e\ufffdf"]
        assert store.messages(conversation)[0].meta == {"note": "c\x00d"}  # JSON keeps it, escaped
        assert store.search_conversations("alice", "\x00") == [store.get_conversation("alice", conversation.id)]
    finally:
        store.close()
