"""The store suite: every store must pass it, the SQLite file and the real Redis alike."""

import json
import subprocess
import sys
import threading
import time

import pytest

from chatbot.chat import answers_at_once
from chatbot.stores import open_store
from chatbot.stores.conversations import Conversation, Message, new_id
from chatbot.stores.memory import MemoryStore
from chatbot.stores.postgres import PostgresStore
from chatbot.stores.redis import RedisStore
from chatbot.stores.sqlite import SQLiteStore
from tests import postgres
from tests.servers import REDIS_URL, ROOT


@pytest.fixture
def sqlite_path(tmp_path):
    return str(tmp_path / "chat.sqlite3")


@pytest.fixture
def postgres_url(postgres_database):
    """A schema of this test's own in the test database: the stores a test makes share it, as workers would."""
    with postgres.new_schema(f"test_{new_id().lower().replace('-', '_')}", postgres_database) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis", "memory", "postgres"])
def make_store(request, sqlite_path):
    """Makes each store in turn: the embedded SQLite file, the real Redis on 127.0.0.1:6379, the memory of this
    process, and the real PostgreSQL on 127.0.0.1:5432."""
    made = []
    prefix = f"test:{new_id()}:"  # one per test: the stores a test makes share it, as workers would

    def make(idle_seconds=30 * 86400):
        if request.param == "sqlite":
            store = SQLiteStore(sqlite_path, idle_seconds)
        elif request.param == "postgres":
            store = PostgresStore(request.getfixturevalue("postgres_url"), idle_seconds)
        elif request.param == "memory":  # one process: the workers a test plays are its threads, on one store
            store = made[0] if made else MemoryStore(idle_seconds)
        else:
            store = RedisStore(REDIS_URL, prefix=prefix, idle_seconds=idle_seconds)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, PostgresStore):
            store.close()
        if isinstance(store, RedisStore):
            keys = list(store.db.scan_iter(store.prefix + "*"))
            if keys:
                store.db.delete(*keys)
            store.db.connection_pool.disconnect()


@pytest.fixture
def chat_store(make_store):
    return make_store()


def test_an_idle_conversation_expires_and_an_active_one_stays(make_store):
    store = make_store(idle_seconds=2)
    idle = store.create_conversation("alice")
    active = store.create_conversation("alice")
    time.sleep(1.2)
    store.add_message(message(active, content="still here"))
    time.sleep(1.3)
    store.forget_idle()
    store.create_conversation("bob")
    assert store.get_conversation("alice", idle.id) is None
    assert [c.id for c in store.list_conversations("alice")] == [active.id]
    assert [m.content for m in store.messages(active)] == ["still here"]


def message(conversation, role="user", content="Hello", **fields):
    return Message(new_id(), conversation.id, role, content, **fields)


def test_a_conversation_belongs_to_its_owner(chat_store):
    mine = chat_store.create_conversation("alice")
    assert chat_store.get_conversation("alice", mine.id) == mine
    assert chat_store.get_conversation("bob", mine.id) is None
    assert chat_store.list_conversations("bob") == []


def test_conversations_are_listed_newest_first(chat_store):
    first = chat_store.create_conversation("alice")
    second = chat_store.create_conversation("alice")
    chat_store.add_message(message(first))  # a new message makes it the newest
    assert [c.id for c in chat_store.list_conversations("alice")] == [first.id, second.id]


def test_messages_keep_their_order_and_fields(chat_store):
    conversation = chat_store.create_conversation("alice")
    question = chat_store.add_message(message(conversation, content="What is 2+2?"))
    answer = chat_store.add_message(message(conversation, "assistant", "", status="streaming", meta={"model": "m"}))
    answer.content, answer.html, answer.status = "4", "<p>4</p>", "done"
    answer.meta["tokens"] = 1
    chat_store.update_message(answer)
    stored = chat_store.messages(conversation)
    assert stored == [question, answer]
    assert stored[1].meta == {"model": "m", "tokens": 1}


def test_what_a_caller_changes_after_saving_is_not_kept_until_it_saves_again(chat_store):
    conversation = chat_store.create_conversation("alice")
    conversation.settings["model"] = "Mistral"
    chat_store.update_conversation(conversation)
    question = chat_store.add_message(message(conversation, content="Kept", meta={"model": "m"}))
    conversation.settings["model"] = "changed, not saved"
    question.meta["model"] = "changed, not saved"
    assert chat_store.get_conversation("alice", conversation.id).settings == {"model": "Mistral"}
    assert chat_store.messages(conversation)[0].meta == {"model": "m"}


def test_an_answer_saved_whole_while_it_is_written_replaces_its_parts(chat_store):
    conversation = chat_store.create_conversation("alice")
    answer = chat_store.add_message(message(conversation, "assistant", "", status="streaming"))
    chat_store.append_to_answer(answer, 0, "Once upon a time, long ago")
    answer.content = "Once upon a time"  # still being written, saved whole: this content is kept, not the parts
    chat_store.update_message(answer)
    assert chat_store.read_message(conversation, answer.id).content == "Once upon a time"


def test_an_error_is_stored_with_its_message(chat_store):
    conversation = chat_store.create_conversation("alice")
    answer = chat_store.add_message(
        message(
            conversation,
            "assistant",
            "Half",
            status="error",
            error={"kind": "truncated", "message": "cut", "hint": "again"},
        )
    )
    assert chat_store.messages(conversation)[0].error == answer.error


def test_title_and_settings_are_saved(chat_store):
    conversation = chat_store.create_conversation("alice")
    conversation.title = "Trip to Paris"
    conversation.settings["model"] = "Mistral"
    chat_store.update_conversation(conversation)
    stored = chat_store.get_conversation("alice", conversation.id)
    assert stored.title == "Trip to Paris" and stored.settings == {"model": "Mistral"}


def test_a_title_is_replaced_only_while_it_is_still_the_one_expected(chat_store):
    conversation = chat_store.create_conversation("alice", "Owls?")
    conversation.settings["system_prompt"] = "Be brief."
    chat_store.update_conversation(conversation)
    stale = chat_store.get_conversation("alice", conversation.id)
    stale.settings = {}  # a copy read before the settings were saved, say
    assert chat_store.replace_title(stale, "Owls?", "Owl facts") is True
    assert chat_store.replace_title(stale, "Owls?", "Night birds") is False  # renamed meanwhile
    stored = chat_store.get_conversation("alice", conversation.id)
    assert stored.title == "Owl facts" and stored.settings == {"system_prompt": "Be brief."}
    chat_store.delete_conversation(conversation)
    assert chat_store.replace_title(stale, "Owl facts", "Back?") is False
    assert chat_store.get_conversation("alice", conversation.id) is None  # nothing made again


def test_everything_survives_a_restart(sqlite_path):
    store = open_store(f"sqlite:///{sqlite_path}", "/unused")
    conversation = store.create_conversation("alice")
    store.add_message(message(conversation, content="remember me"))
    reopened = open_store(f"sqlite:///{sqlite_path}", "/unused")
    assert [m.content for m in reopened.messages(reopened.get_conversation("alice", conversation.id))] == [
        "remember me"
    ]


def test_default_store_is_a_file_in_the_instance_folder(tmp_path):
    store = open_store(None, str(tmp_path / "instance"))
    assert store.path == str(tmp_path / "instance" / "chat.sqlite3")


def test_the_memory_url_opens_a_store_that_keeps_nothing_past_its_process():
    store = open_store("memory://", "/unused", idle_seconds=60)
    assert isinstance(store, MemoryStore) and store.idle_seconds == 60
    kept = store.create_conversation("alice")
    assert store.get_conversation("alice", kept.id) == kept
    assert open_store("memory://", "/unused").get_conversation("alice", kept.id) is None  # as after a restart


def test_two_writers_append_without_losing_a_message(chat_store):
    """Two tabs writing at once: appends, never a rewrite of the history."""
    conversation = chat_store.create_conversation("alice")

    def write(tab):
        for i in range(50):
            chat_store.add_message(message(conversation, content=f"{tab}-{i}"))

    threads = [threading.Thread(target=write, args=(tab,)) for tab in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = [m.content for m in chat_store.messages(conversation)]
    assert sorted(contents) == sorted([f"a-{i}" for i in range(50)] + [f"b-{i}" for i in range(50)])


def test_delete_removes_the_conversation_and_its_messages(chat_store):
    conversation = chat_store.create_conversation("alice")
    chat_store.add_message(message(conversation))
    kept = chat_store.create_conversation("alice")
    chat_store.delete_conversation(conversation)
    assert chat_store.get_conversation("alice", conversation.id) is None
    assert chat_store.messages(conversation) == []
    assert [c.id for c in chat_store.list_conversations("alice")] == [kept.id]


def test_search_finds_titles_and_messages_of_the_owner_only(chat_store):
    paris = chat_store.create_conversation("alice", title="Trip to Paris")
    code = chat_store.create_conversation("alice")
    chat_store.add_message(message(code, content="How do I use 50% of a_list?"))
    chat_store.add_message(message(chat_store.create_conversation("bob"), content="paris"))
    assert [c.id for c in chat_store.search_conversations("alice", "PARIS")] == [paris.id]
    assert [c.id for c in chat_store.search_conversations("alice", "50%")] == [code.id]
    assert [c.id for c in chat_store.search_conversations("alice", "a_l")] == [code.id]
    assert [c.id for c in chat_store.search_conversations("alice", "%")] == [code.id]
    assert chat_store.search_conversations("alice", "nothing like it") == []


def test_an_edit_or_a_regeneration_is_a_branch_beside_what_was_there(chat_store):
    conversation = chat_store.create_conversation("alice")
    question = message(conversation, content="2+2?")
    answer = message(conversation, "assistant", "4", parent_id=question.id)
    assert chat_store.start_answer(conversation, [question, answer])
    again = message(conversation, "assistant", "four", parent_id=question.id)
    assert chat_store.start_answer(conversation, [again])  # nothing is dropped, nothing rewritten
    edited = message(conversation, content="3+3?")
    edited_answer = message(conversation, "assistant", "6", parent_id=edited.id)
    assert chat_store.start_answer(conversation, [edited, edited_answer])
    stored = chat_store.messages(conversation)
    assert [(m.content, m.parent_id) for m in stored] == [
        ("2+2?", None),
        ("4", question.id),
        ("four", question.id),
        ("3+3?", None),
        ("6", edited.id),
    ]
    assert chat_store.get_conversation("alice", conversation.id).leaf_id == edited_answer.id  # the newest shown
    chat_store.choose_branch(conversation, answer.id)
    conversation.title = "Sums"
    chat_store.update_conversation(conversation)  # a rename does not move the branch shown
    assert chat_store.get_conversation("alice", conversation.id).leaf_id == answer.id


def test_an_answer_goes_on_in_its_place(chat_store):
    conversation = chat_store.create_conversation("alice")
    question = message(conversation, content="Count")
    answer = message(conversation, "assistant", "one, two", parent_id=question.id)
    assert chat_store.start_answer(conversation, [question, answer])
    chat_store.start_answer(conversation, [message(conversation, "assistant", "1, 2", parent_id=question.id)])
    answer.content, answer.status = "one, two", "streaming"
    assert chat_store.start_answer(conversation, [answer])  # Continue: the same message, written on
    assert [m.content for m in chat_store.messages(conversation)] == ["Count", "one, two", "1, 2"]
    assert not chat_store.start_answer(conversation, [message(conversation)])  # it is being written, not last
    assert chat_store.get_conversation("alice", conversation.id).leaf_id == answer.id


def test_messages_saved_before_branches_follow_each_other(sqlite_path):
    import sqlite3

    store = SQLiteStore(sqlite_path)
    conversation = store.create_conversation("alice")
    for text in "abc":
        store.add_message(message(conversation, content=text))
    with sqlite3.connect(sqlite_path) as db:  # the file as an older version made it
        db.execute("DROP INDEX answers_being_written")
        db.execute("ALTER TABLE messages DROP COLUMN parent_id")
        db.execute("ALTER TABLE conversations DROP COLUMN leaf_id")
    reopened = SQLiteStore(sqlite_path)
    stored = reopened.messages(reopened.get_conversation("alice", conversation.id))
    assert [m.parent_id for m in stored] == [None, stored[0].id, stored[1].id]


def test_redis_messages_saved_before_branches_follow_each_other():
    import json
    from dataclasses import asdict

    store = RedisStore(REDIS_URL, prefix=f"test:{new_id()}:")
    try:
        conversation = store.create_conversation("alice")
        for text in "abc":
            older = asdict(message(conversation, content=text))
            del older["parent_id"]  # as an older version saved it
            store.db.hset(store._key("msgs", conversation.id), older["id"], json.dumps(older))
            store.db.rpush(store._key("order", conversation.id), older["id"])
        stored = store.messages(conversation)
        assert [m.parent_id for m in stored] == [None, stored[0].id, stored[1].id]
    finally:
        store.db.delete(*store.db.keys(store.prefix + "*"))


def test_one_answer_at_a_time_even_when_six_start_at_once(make_store):
    stores = [make_store() for _ in range(6)]  # each with its own connections, as six workers would have
    conversation = stores[0].create_conversation("alice")
    go = threading.Barrier(6)
    started = []

    def start(store):
        go.wait()
        question = message(conversation, content="Hi")
        answer = message(conversation, "assistant", "", status="streaming", parent_id=question.id)
        started.append(store.start_answer(conversation, [question, answer]))

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(started) == [False] * 5 + [True]
    assert [m.role for m in stores[0].messages(conversation)] == ["user", "assistant"]
    ended = stores[0].messages(conversation)[-1]
    assert not stores[1].start_answer(conversation, [message(conversation)])  # still being written
    ended.status = "done"
    stores[0].update_message(ended)
    assert stores[1].start_answer(conversation, [message(conversation)])


def test_an_answer_grows_by_parts_and_a_follower_reads_only_the_new_part(chat_store):
    conversation = chat_store.create_conversation("alice")
    answer = chat_store.add_message(message(conversation, "assistant", "Once ", status="streaming"))
    start = len(answer.content)
    for part in ("upon ", "a tïme ", "🦊 there"):
        assert chat_store.append_to_answer(answer, start, part) is False
        start += len(part)
    assert time.time() - answer.meta["saved_at"] < 1
    assert chat_store.messages(conversation)[0].content == "Once upon a tïme 🦊 there"
    assert chat_store.messages(conversation)[0].meta["saved_at"] == answer.meta["saved_at"]
    assert chat_store.read_message(conversation, answer.id).content == "Once upon a tïme 🦊 there"
    assert chat_store.read_message(conversation, answer.id, 10).content == "a tïme 🦊 there"
    assert chat_store.read_message(conversation, answer.id, 12).content == "tïme 🦊 there"  # inside a part
    assert chat_store.read_message(conversation, answer.id, 3).content == "e upon a tïme 🦊 there"
    assert chat_store.read_message(conversation, answer.id, start).content == ""
    assert chat_store.read_message(chat_store.create_conversation("alice"), answer.id) is None
    chat_store.request_stop(answer.id)  # from another tab: the next save hears of it
    assert chat_store.append_to_answer(answer, start, "!") is True
    assert chat_store.stop_requested(answer.id)

    answer.content, answer.status = "Once upon a time there was a fox.", "done"
    chat_store.update_message(answer)  # the whole content replaces the parts
    assert chat_store.messages(conversation)[0].content == "Once upon a time there was a fox."
    assert chat_store.read_message(conversation, answer.id, 17).content == "there was a fox."


def test_an_answer_whose_conversation_is_deleted_while_it_is_written_is_told_to_stop_and_not_kept(chat_store):
    conversation = chat_store.create_conversation("alice")
    question = message(conversation)
    answer = message(conversation, "assistant", "", status="streaming", parent_id=question.id)
    assert chat_store.start_answer(conversation, [question, answer])
    assert chat_store.append_to_answer(answer, 0, "Half") is False
    chat_store.delete_conversation(conversation)
    assert chat_store.append_to_answer(answer, 4, " more") is True  # nobody will read the rest: stop
    answer.content, answer.status = "Half more", "stopped"
    chat_store.update_message(answer)
    assert chat_store.read_message(conversation, answer.id) is None
    assert leftovers(chat_store) == []


def leftovers(store) -> list:
    """What a store still holds of any conversation or message."""
    if isinstance(store, RedisStore):
        return sorted(store.db.scan_iter(store.prefix + "*"))
    if isinstance(store, MemoryStore):
        return list(store._kept)
    tables = ("conversations", "messages", "answer_parts", "files", "snapshots", "share_links")
    if isinstance(store, PostgresStore):
        counted = [(table, store._query(f"SELECT count(*) FROM {table}")[0][0]) for table in tables]
        return [(table, n) for table, n in counted if n]
    with store._connection() as db:
        return [(table, n) for table in tables if (n := db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])]


def test_saving_a_part_costs_the_same_however_long_the_answer(chat_store):
    """Appending to an answer 20,000 parts long takes no longer than to one 10 parts long (timed in turns, so that
    a busy moment of the machine slows both alike)."""
    conversation = chat_store.create_conversation("alice")
    short, long = (chat_store.add_message(message(conversation, "assistant", "", status="streaming")) for _ in "ab")
    part, starts = "x" * 100, {short.id: 0, long.id: 0}

    def append(answer, count):
        began = time.perf_counter()
        for _ in range(count):
            chat_store.append_to_answer(answer, starts[answer.id], part)
            starts[answer.id] += len(part)
        return time.perf_counter() - began

    append(short, 10)
    append(long, 20_000)
    times = {short.id: [], long.id: []}
    for _ in range(5):
        for answer in (short, long):
            times[answer.id].append(append(answer, 100))
    assert min(times[long.id]) < min(times[short.id]) * 3, times
    assert len(chat_store.read_message(conversation, long.id, starts[long.id] - 150).content) == 150


def test_many_requests_at_once_wait_for_a_connection_instead_of_failing(chat_store):
    """A burst of sockets opening at once (gevent: hundreds per worker) must not exhaust the store's connections."""
    conversation = chat_store.create_conversation("alice")
    start, failures = threading.Barrier(300), []

    def read():
        start.wait()
        try:
            for _ in range(5):
                chat_store.get_conversation("alice", conversation.id)
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=read) for _ in range(300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_workers_starting_together_on_a_new_file_all_open_it(tmp_path):
    """gunicorn boots its workers at once; each opens the store, and none may fail to boot (20 new files, 6 workers)."""
    start = time.time() + 2  # after every process has imported the store
    code = (
        "import time\n"
        "from chatbot.stores.sqlite import SQLiteStore\n"
        "for n in range(20):\n"
        f"    while time.time() < {start} + n * 0.05: pass\n"
        f"    SQLiteStore(f'{tmp_path}/{{n}}.sqlite3')\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(6)]
    complaints = [worker.communicate(timeout=30)[1] for worker in workers]
    failures = [said for worker, said in zip(workers, complaints, strict=True) if worker.returncode]
    assert failures == []
    assert SQLiteStore(str(tmp_path / "0.sqlite3"))._query("PRAGMA journal_mode") == [("wal",)]


def test_counters_add_up_per_key_and_start_again_in_a_new_window(make_store):
    first, second = make_store(), make_store()  # two workers
    assert first.add_to_count("answers:session:a", 1, 3600) == 1
    assert second.add_to_count("answers:session:a", 1, 3600) == 2
    assert first.add_to_count("answers:session:a", 5, 3600) == 7
    assert second.add_to_count("answers:session:b", 1, 3600) == 1
    assert first.add_to_count("answers:session:a", 0, 3600) == 7  # how much is used, counting nothing
    first.add_to_count("short", 1, 1)
    time.sleep(1.05 - time.time() % 1)  # into the next one-second window
    assert second.add_to_count("short", 1, 1) == 1


def test_records_are_made_once_saved_read_listed_and_deleted(make_store):
    first, second = make_store(), make_store()
    assert first.create_record("account", "ada", {"username": "ada", "admin": True})
    assert not second.create_record("account", "ada", {"username": "ada", "admin": False})  # taken
    assert second.load_record("account", "ada") == {"username": "ada", "admin": True}
    second.save_record("account", "ada", {"username": "ada", "admin": False})
    first.save_record("account", "bob", {"username": "bob"})
    assert first.load_record("account", "ada") == {"username": "ada", "admin": False}
    assert sorted(r["username"] for r in second.records("account")) == ["ada", "bob"]
    assert first.records("invitation") == [] and first.load_record("invitation", "ada") is None
    first.delete_record("account", "bob")
    assert [r["username"] for r in second.records("account")] == ["ada"]
    assert not first.delete_record_if_unchanged("account", "ada", {"username": "ada", "admin": True})  # saved since
    assert second.delete_record_if_unchanged("account", "ada", {"username": "ada", "admin": False})
    assert first.load_record("account", "ada") is None


def test_a_browsers_conversations_move_to_an_account(chat_store):
    mine = chat_store.create_conversation("browser-1")
    chat_store.add_message(message(mine, content="before signing in"))
    kept = chat_store.create_conversation("account:ada")
    chat_store.move_conversations("browser-1", "account:ada")
    assert chat_store.list_conversations("browser-1") == []
    assert [c.id for c in chat_store.list_conversations("account:ada")] == [kept.id, mine.id]
    moved = chat_store.get_conversation("account:ada", mine.id)
    assert moved is not None and [m.content for m in chat_store.messages(moved)] == ["before signing in"]
    assert chat_store.get_conversation("browser-1", mine.id) is None
    chat_store.move_conversations("nobody", "account:ada")  # nothing to move: nothing happens


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # every byte value: nothing is lost as text on the way


def test_a_file_is_kept_with_its_conversation_and_read_back_whole(make_store):
    first, second = make_store(), make_store()  # two workers
    conversation = first.create_conversation("alice")
    info = {"id": "f1", "name": "cat.png", "kind": "image", "mime": "image/png", "size": len(PNG)}
    first.save_file(conversation, "f1", info, PNG)
    assert second.load_file(conversation, "f1") == (info, PNG)
    assert second.load_file(conversation, "f2") is None


def test_a_file_of_one_owners_conversation_is_not_read_through_anothers(chat_store):
    alice = chat_store.create_conversation("alice")
    bob = chat_store.create_conversation("bob")
    chat_store.save_file(alice, "secret", {"name": "plan.txt", "text": "mine"}, b"mine")
    assert chat_store.load_file(bob, "secret") is None
    assert chat_store.load_file(alice, "secret") == ({"name": "plan.txt", "text": "mine"}, b"mine")


def test_files_are_deleted_with_their_conversation(chat_store):
    conversation = chat_store.create_conversation("alice")
    kept = chat_store.create_conversation("alice")
    chat_store.save_file(conversation, "f1", {"name": "a.txt"}, b"a")
    chat_store.save_file(kept, "f2", {"name": "b.txt"}, b"b")
    chat_store.delete_conversation(conversation)
    assert chat_store.load_file(conversation, "f1") is None
    assert chat_store.load_file(kept, "f2") == ({"name": "b.txt"}, b"b")


def test_the_files_an_owner_keeps_are_counted_over_all_their_conversations(chat_store):
    first, second = chat_store.create_conversation("alice"), chat_store.create_conversation("alice")
    chat_store.save_file(first, "f1", {"name": "a.txt"}, b"a" * 1000)
    chat_store.save_file(second, "f2", {"name": "b.txt"}, b"b" * 24)
    chat_store.save_file(chat_store.create_conversation("bob"), "f3", {"name": "c.txt"}, b"c" * 7)
    assert (chat_store.kept_size("alice"), chat_store.kept_size("bob"), chat_store.kept_size("eve")) == (1024, 7, 0)
    chat_store.delete_conversation(first)
    assert chat_store.kept_size("alice") == 24


def test_files_expire_with_their_idle_conversation(make_store):
    store = make_store(idle_seconds=1)
    idle = store.create_conversation("alice")
    store.save_file(idle, "f1", {"name": "a.txt"}, b"a")
    time.sleep(1.3)
    store.forget_idle()
    assert store.load_file(idle, "f1") is None and store.kept_size("alice") == 0
    if isinstance(store, RedisStore):  # nothing of it is left behind in Redis either
        assert not list(store.db.scan_iter(store.prefix + "*" + idle.id + "*"))


SNAPSHOT = {"title": "Owls", "snapshot": "{}" + " " * 1000, "page": "<p>Hoot</p>"}


def link(snapshot="k1", expires_at=None):
    return {"snapshot": snapshot, "expires_at": expires_at, "made_at": time.time()}


def test_a_snapshot_is_kept_once_for_every_link_that_shows_it_and_counted_with_the_files(chat_store):
    conversation = chat_store.create_conversation("alice")
    assert chat_store.save_share(conversation, "a", link()) is False  # no snapshot k1 kept yet: none made
    assert chat_store.share_links("alice") == []
    assert chat_store.save_share(conversation, "a", link(), SNAPSHOT) is True
    size = len(json.dumps(SNAPSHOT).encode())
    assert chat_store.kept_size("alice") == size
    for token in ("b", "c", "d"):
        assert chat_store.save_share(conversation, token, link()) is True  # the same snapshot, kept once
    assert chat_store.save_share(conversation, "e", link("k2"), SNAPSHOT) is True  # another snapshot
    assert chat_store.kept_size("alice") == 2 * size and chat_store.kept_size("bob") == 0
    found = chat_store.load_share(conversation.id, "c")
    assert found is not None and found[0]["snapshot"] == "k1" and found[1] == SNAPSHOT
    assert sorted(token for _, token, _ in chat_store.share_links("alice")) == ["a", "b", "c", "d", "e"]
    assert {conversation_id for conversation_id, _, _ in chat_store.share_links("alice")} == {conversation.id}
    assert chat_store.share_links("bob") == [] and chat_store.load_share("elsewhere", "c") is None
    for token in ("a", "b", "c"):
        chat_store.delete_share_link(conversation, token)
    assert chat_store.load_share(conversation.id, "a") is None and chat_store.kept_size("alice") == 2 * size
    chat_store.delete_share_link(conversation, "d")  # the last link of k1: its snapshot goes with it
    assert chat_store.load_share(conversation.id, "d") is None and chat_store.kept_size("alice") == size


def test_share_links_and_their_snapshots_go_with_their_conversation(chat_store):
    conversation = chat_store.create_conversation("alice")
    assert chat_store.save_share(conversation, "a", link(), SNAPSHOT)
    chat_store.delete_conversation(conversation)
    assert chat_store.load_share(conversation.id, "a") is None and chat_store.share_links("alice") == []
    assert chat_store.save_share(conversation, "b", link(), SNAPSHOT) is False  # nothing kept for a chat gone
    assert chat_store.kept_size("alice") == 0 and leftovers(chat_store) == []


def test_share_links_and_their_snapshots_expire_with_their_idle_conversation(make_store):
    store = make_store(idle_seconds=1)
    idle = store.create_conversation("alice")
    assert store.save_share(idle, "a", link(), SNAPSHOT)
    time.sleep(1.3)
    store.forget_idle()
    assert store.load_share(idle.id, "a") is None and store.share_links("alice") == []
    assert store.kept_size("alice") == 0 and leftovers(store) == []


def test_a_conversation_is_restored_as_it_was_and_everything_kept_is_listed(make_store):
    first, second = make_store(), make_store()  # two workers
    made = first.create_conversation("alice")
    old = Conversation("old-one", "bob", "Kept", 1000.5, 2000.25, {"model": "m"}, "b")
    question = Message("q", old.id, "user", "Hi", created_at=1000.5)
    answers = [
        Message(id_, old.id, "assistant", text, html=f"<p>{text}</p>", parent_id="q", created_at=1001.0)
        for id_, text in (("a", "Hello"), ("b", "Hey"))
    ]
    first.restore_conversation(old, [])
    first.save_file(old, "f1", {"name": "cat.png"}, PNG)
    first.restore_conversation(old, [question, *answers])  # once more, after its files: its times as they were
    first.save_record("account", "ada", {"username": "ada", "password_hash": "h"})
    first.save_record("site", "settings", {"limits": 3})
    assert second.get_conversation("bob", old.id) == old
    assert second.messages(old) == [question, *answers]
    assert [c.id for c in second.list_conversations("bob")] == [old.id]
    assert sorted(c.id for c in second.every_conversation()) == sorted([made.id, old.id])
    assert second.files_of(old) == [("f1", {"name": "cat.png"}, PNG)] and second.files_of(made) == []
    assert sorted(second.every_record()) == [
        ("account", "ada", {"username": "ada", "password_hash": "h"}),
        ("site", "settings", {"limits": 3}),
    ]


def test_sends_at_the_same_instant_on_two_workers_never_pass_the_answers_a_person_may_have_at_once(make_store):
    """Each answer takes a slot made once in the store: of ten sends at once, on two workers, three pass."""
    workers, config = [make_store(), make_store()], {"MAX_ANSWERS_AT_ONCE": 3, "MAX_ANSWERS_AT_ONCE_PER_ADDRESS": 0}
    together, held, refused = threading.Barrier(10), [], []

    def send(store):
        together.wait()
        try:
            held.append(answers_at_once.claim(store, config, "alice", "192.0.2.1"))
        except answers_at_once.TooManyAtOnce as too_many:
            refused.append(str(too_many))

    sends = [threading.Thread(target=send, args=(workers[number % 2],)) for number in range(10)]
    for thread in sends:
        thread.start()
    for thread in sends:
        thread.join(30)
    assert len(held) == 3
    assert refused == ["You have 3 answers being written; wait for one to finish or stop one."] * 7
    answers_at_once.claim(workers[1], config, "bob", "192.0.2.1")  # another person is not held back
    held[0].release()
    answers_at_once.claim(workers[1], config, "alice", "192.0.2.1")  # one ended: one more may start


class Interleaved:
    """A worker's store whose `load_record` does something more after it reads (`after_reading`): the order in
    which workers interleave, made to happen; every other method is the store's."""

    def __init__(self, store, after_reading):
        self.store, self.after_reading = store, after_reading

    def load_record(self, kind, key):
        record = self.store.load_record(kind, key)
        self.after_reading()
        return record

    def __getattr__(self, name):
        return getattr(self.store, name)


ONE_AT_ONCE = {"MAX_ANSWERS_AT_ONCE": 1, "MAX_ANSWERS_AT_ONCE_PER_ADDRESS": 0}


def test_sends_taking_over_a_crashed_slot_at_the_same_instant_on_two_workers_leave_it_one_holder(make_store):
    """Eight sends find the person's one slot held by a writer that crashed before its answer started, all read
    it before any goes on, then take it over one after another (the worst order): the first holds it, the others
    find it held by the first and are refused."""
    workers = [make_store(), make_store()]
    crashed = {"token": "crashed", "owner": "alice", "since": 0}
    assert workers[0].create_record(answers_at_once.KIND, "session:alice 0", crashed)
    together, turn, held, refused = threading.Barrier(8), threading.Lock(), [], []

    def all_read_then_one_at_a_time():
        together.wait(10)
        turn.acquire()

    def send(store):
        try:
            held.append(
                answers_at_once.claim(Interleaved(store, all_read_then_one_at_a_time), ONE_AT_ONCE, "alice", None)
            )
        except answers_at_once.TooManyAtOnce as too_many:
            refused.append(str(too_many))
        finally:
            turn.release()

    sends = [threading.Thread(target=send, args=(workers[number % 2],)) for number in range(8)]
    for thread in sends:
        thread.start()
    for thread in sends:
        thread.join(30)
    assert len(held) == 1 and len(refused) == 7
    assert workers[1].load_record(answers_at_once.KIND, "session:alice 0")["token"] == held[0].token


def test_a_writer_letting_go_of_its_slot_never_frees_the_slot_another_took_over_meanwhile(make_store):
    """Its answer ended, so its slot is free to take over: a send on another worker takes it between the writer's
    read of it and its delete; the slot stays the taker's, and the person's next send is refused."""
    first, second = make_store(), make_store()
    ending = answers_at_once.claim(first, ONE_AT_ONCE, "alice", None)
    first.save_record(answers_at_once.KIND, "session:alice 0", {**ending.record(), "since": 0})  # free to take over
    takers = []

    def taken_over_once():
        if not takers:
            takers.append(answers_at_once.claim(second, ONE_AT_ONCE, "alice", None))

    ending.store = Interleaved(first, taken_over_once)
    ending.release()
    assert second.load_record(answers_at_once.KIND, "session:alice 0")["token"] == takers[0].token
    with pytest.raises(answers_at_once.TooManyAtOnce):
        answers_at_once.claim(second, ONE_AT_ONCE, "alice", None)


def test_the_slot_of_an_answer_whose_writer_crashed_is_free_again(make_store):
    """A slot is held while its answer is being written (saved within running.STALE_SECONDS), and free once it is
    not: its writer crashed while writing, after the end, or before the answer started."""
    store, config = make_store(), {"MAX_ANSWERS_AT_ONCE": 1, "MAX_ANSWERS_AT_ONCE_PER_ADDRESS": 0}
    conversation = store.create_conversation("alice")
    answer = message(conversation, "assistant", "", status="streaming", meta={"saved_at": time.time()})
    assert store.start_answer(conversation, [message(conversation), answer])

    def claim() -> answers_at_once.Held | None:
        try:
            return answers_at_once.claim(store, config, "alice", None)
        except answers_at_once.TooManyAtOnce:
            return None

    claim().name(answer)  # its writer crashes: it never lets go
    assert claim() is None  # the answer is being written
    answer.meta["saved_at"] = time.time() - 31
    store.update_message(answer)
    starting = claim()  # not saved for 31 s: its writer went away
    assert starting is not None and claim() is None  # an answer about to start holds it
    (key,) = starting.keys
    store.save_record(answers_at_once.KIND, key, {**store.load_record(answers_at_once.KIND, key), "since": 0})
    ended = claim()  # none started in it within 30 s: its writer crashed before
    answer.meta["saved_at"] = time.time()
    store.update_message(answer)
    ended.name(answer)
    assert claim() is None
    answer.status = "done"
    store.update_message(answer)
    assert claim() is not None  # it ended, and its writer crashed before it let go
