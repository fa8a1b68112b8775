"""Backup and restore: everything in one archive, read while the chat runs and loaded into an empty store of any
kind, so a chat moves between SQLite, PostgreSQL and Redis with two commands and nothing is lost on the way."""

import gzip
import json
import time

import pytest

from chatbot.chat import accounts, backup
from chatbot.stores.conversations import Message, new_id
from chatbot.stores.postgres import PostgresStore
from chatbot.stores.redis import RedisStore
from chatbot.stores.sqlite import SQLiteStore
from tests import postgres
from tests.helpers import PASSWORD, sign_in
from tests.servers import REDIS_URL

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def redis_store():
    store = RedisStore(REDIS_URL, prefix=f"test:{new_id()}:")
    yield store
    keys = list(store.db.scan_iter(store.prefix + "*"))
    if keys:
        store.db.delete(*keys)
    store.db.connection_pool.disconnect()


@pytest.fixture
def postgres_store(postgres_database):
    with postgres.new_schema(f"test_{new_id().lower().replace('-', '_')}", postgres_database) as url:
        store = PostgresStore(url)
        yield store
        store.close()


def fill(store):
    """A chat in use: an admin and a waiting account, the site's settings, branches, a file, a snapshot shown by two
    links, a browser's chat, and an answer still being written; the streaming answer."""
    accounts.create(store, "ada", PASSWORD, admin=True, first=True)
    accounts.create(store, "bob", "bobs own password")
    store.save_record("site", "settings", {"messages_per_minute": 3, "models": ["m"]})
    conversation = store.create_conversation("account:ada", "Owls")
    question = Message(new_id(), conversation.id, "user", "Do owls sleep?")
    answer = Message(new_id(), conversation.id, "assistant", "By day.", html="<p>By day.</p>", parent_id=question.id)
    assert store.start_answer(conversation, [question, answer])
    again = Message(new_id(), conversation.id, "assistant", "Yes.", html="<p>Yes.</p>", parent_id=question.id)
    assert store.start_answer(conversation, [again])
    store.choose_branch(conversation, answer.id)
    store.save_file(conversation, "f1", {"name": "owl.png", "size": len(PNG)}, PNG)
    snapshot = {"title": "Owls", "page": "<p>Hoot</p>"}
    for token in ("t1", "t2"):
        link = {"snapshot": "k1", "expires_at": None, "made_at": 1.5}
        assert store.save_share(conversation, token, link, snapshot)
    browsers = store.create_conversation("browser-1")
    store.add_message(Message(new_id(), browsers.id, "user", "Hi from a browser, ünïcode 🦉"))
    writing = store.create_conversation("account:ada", "Still writing")
    question = Message(new_id(), writing.id, "user", "Count")
    streaming = Message(new_id(), writing.id, "assistant", "", status="streaming", parent_id=question.id)
    assert store.start_answer(writing, [question, streaming])
    for start, part in ((0, "one, "), (5, "two, "), (10, "three")):
        store.append_to_answer(streaming, start, part)
    return streaming


def archived(path):
    """The archive's documents but its first line (which says when it was made)."""
    with gzip.open(path, "rt") as archive:
        head, *rest = (json.loads(line) for line in archive)
    assert head["format"] == backup.FORMAT and head["version"] == backup.VERSION
    return rest


def test_sqlite_to_postgresql_to_redis_to_sqlite_keeps_everything(tmp_path, postgres_store, redis_store):
    first = SQLiteStore(str(tmp_path / "first.sqlite3"))
    streaming = fill(first)
    exported = backup.back_up(first, str(tmp_path / "0.gz"))
    assert exported == {
        "account records": 2,
        "site records": 2,  # the first admin, the settings
        "conversations": 3,
        "messages": 6,
        "files": 1,
        "share links": 2,
    }
    archives = [tmp_path / "0.gz"]
    for number, store in enumerate([postgres_store, redis_store, SQLiteStore(str(tmp_path / "last.sqlite3"))], 1):
        assert backup.restore(store, str(archives[-1])) == exported
        archives.append(tmp_path / f"{number}.gz")
        backup.back_up(store, str(archives[-1]))
    documents = [archived(path) for path in archives]
    assert documents[1] == documents[0] and documents[2] == documents[0] and documents[3] == documents[0]

    last = SQLiteStore(str(tmp_path / "last.sqlite3"))
    [writing] = last.search_conversations("account:ada", "Still writing")
    interrupted = last.read_message(writing, streaming.id)
    assert interrupted.content == "one, two, three" and interrupted.status == "error"  # restored as interrupted
    assert interrupted.error["kind"] == "interrupted" and interrupted.html == "<p>one, two, three</p>\n"
    assert last.start_answer(writing, [Message(new_id(), writing.id, "user", "Go on")])  # nothing blocks it
    [owls] = last.search_conversations("account:ada", "Owls")
    assert owls == first.get_conversation("account:ada", owls.id)  # its times and the branch shown too
    assert last.load_file(owls, "f1")[1] == PNG and last.load_share(owls.id, "t2")[1]["page"] == "<p>Hoot</p>"
    assert accounts.load(last, "ada").password_hash == accounts.load(first, "ada").password_hash


def test_a_backup_while_answers_are_written_holds_each_conversation_whole(tmp_path, postgres_store):
    streaming = fill(postgres_store)
    written = []
    for number in range(5):
        postgres_store.append_to_answer(streaming, 15 + number, "!")
        backup.back_up(postgres_store, str(tmp_path / "now.gz"))
        [answer] = [
            m
            for d in archived(tmp_path / "now.gz")
            if "conversation" in d
            for m in d["conversation"]["messages"]
            if m["id"] == streaming.id
        ]
        written.append(answer["content"])
    assert written == ["one, two, three" + "!" * n for n in range(1, 6)]


def test_a_restore_into_a_store_that_is_not_empty_is_refused_and_changes_nothing(tmp_path, redis_store):
    fill(SQLiteStore(str(tmp_path / "chat.sqlite3")))
    backup.back_up(SQLiteStore(str(tmp_path / "chat.sqlite3")), str(tmp_path / "chat.gz"))
    kept = redis_store.create_conversation("alice", "Mine")
    with pytest.raises(backup.ArchiveProblem, match="not empty: a restore loads an archive into an empty store only"):
        backup.restore(redis_store, str(tmp_path / "chat.gz"))
    assert redis_store.every_conversation() == [kept] and redis_store.every_record() == []


def test_what_is_not_an_archive_or_one_from_a_newer_chat_is_refused_in_words(tmp_path):
    store = SQLiteStore(str(tmp_path / "chat.sqlite3"))
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(backup.ArchiveProblem, match="notes.txt cannot be read as an archive of the chat"):
        backup.restore(store, str(tmp_path / "notes.txt"))
    newer = tmp_path / "newer.gz"
    with gzip.open(newer, "wt") as archive:
        archive.write(json.dumps({"format": backup.FORMAT, "version": backup.VERSION + 1, "made_at": time.time()}))
    with pytest.raises(backup.ArchiveProblem, match=r"made by a newer chat \(archive version 2; this chat reads up to"):
        backup.restore(store, str(newer))
    assert store.every_record() == []


def test_flask_backup_and_restore_move_a_chat_to_another_store_and_ada_signs_in_there(tmp_path, make_app, redis_store):
    old = make_app()
    fill(old.extensions["chat_store"])
    done = old.test_cli_runner().invoke(args=["backup", str(tmp_path / "chat.gz")])
    assert done.exit_code == 0, done.output
    assert "Backed up to" in done.output and "3 conversations" in done.output and "2 share links" in done.output

    new = make_app(CHAT_STORE_URL=f"sqlite:///{tmp_path}/moved.sqlite3")
    done = new.test_cli_runner().invoke(args=["restore", str(tmp_path / "chat.gz")])
    assert done.exit_code == 0, done.output
    assert "Restored from" in done.output and "6 messages" in done.output
    ada = new.test_client()
    assert sign_in(ada, "ada").status_code == 302
    page = ada.get("/", follow_redirects=True).text
    assert "Owls" in page and "Still writing" in page
    again = new.test_cli_runner().invoke(args=["restore", str(tmp_path / "chat.gz")])
    assert again.exit_code == 1 and "is not empty" in again.output
