"""Branches: Regenerate and Edit keep what was there; the page, the socket and the model see one branch."""

import io
import json
import re

from chatbot.chat import transfer
from chatbot.chat.branches import Tree
from chatbot.chat.replies import run_regeneration, run_reply
from chatbot.stores.conversations import Message, new_id
from tests.helpers import Recorder, csrf, first_message_id, new_store, open_chat, settings_for
from tests.servers import ANSWER_TEXT, FINISHED, ChatClient, act, read_until, shown_answer

VERSIONS = re.compile(r'class="branch-position">(\d+) / (\d+)<')


def message(role, content, parent=None):
    return Message(new_id(), "c", role, content, parent_id=parent.id if parent else None)


def test_the_tree_gives_the_branch_its_alternatives_and_the_newest_continuation():
    question = message("user", "2+2?")
    first, second = message("assistant", "4", question), message("assistant", "four", question)
    follow_up = message("user", "And 3+3?", first)
    edited = message("user", "2+3?")
    tree = Tree([question, first, second, follow_up, edited])
    assert tree.path_to(follow_up.id) == [question, first, follow_up]
    assert tree.chosen("") == [edited] and tree.chosen("gone") == [edited]  # no choice: the newest message
    assert tree.chosen(second.id) == [question, second]
    assert tree.newest_leaf(first.id) == follow_up.id and tree.newest_leaf(question.id) == second.id
    assert tree.alternatives(second).ids == (first.id, second.id) and tree.alternatives(second).index == 1
    assert tree.alternatives(second).previous == first.id and tree.alternatives(second).next is None
    assert tree.alternatives(edited).ids == (question.id, edited.id)  # first messages are alternatives too
    assert tree.alternatives(follow_up).ids == (follow_up.id,)
    assert tree.shows(follow_up.id, first.id) and not tree.shows(follow_up.id, second.id)


def test_a_message_naming_itself_as_parent_does_not_loop():
    looped = message("user", "x")
    looped.parent_id = looped.id
    assert Tree([looped]).path_to(looped.id) == [looped]


def test_regenerate_and_edit_keep_every_version_and_the_model_sees_its_branch_alone(fake):
    store, conversation = new_store()
    settings = settings_for(fake.task_url())
    fake.reply(tokens=["Paris"])
    first = run_reply(store, conversation, "Capital of France?", settings, Recorder())
    fake.reply(tokens=["Lyon"])
    run_reply(store, conversation, "Second city?", settings, Recorder(), after=first.id)
    fake.reply(tokens=["Marseille"])
    again = run_regeneration(store, conversation, settings, Recorder())
    assert "Lyon" not in fake.requests[-1].json["inputs"]  # the old answer is a version aside, not history

    fake.reply(tokens=["Berlin"])
    question = store.messages(conversation)[0]
    edited = run_reply(store, conversation, "Capital of Germany?", settings, Recorder(), replacing=question.id)
    assert "France" not in fake.requests[-1].json["inputs"] and "Paris" not in fake.requests[-1].json["inputs"]
    tree = Tree(store.messages(conversation))
    assert [m.content for m in tree.messages] == [
        "Capital of France?",
        "Paris",
        "Second city?",
        "Lyon",
        "Marseille",
        "Capital of Germany?",
        "Berlin",
    ]
    assert [m.content for m in tree.chosen(store.get_conversation("alice", conversation.id).leaf_id)] == [
        "Capital of Germany?",
        "Berlin",
    ]
    assert [m.content for m in tree.path_to(again.id)] == ["Capital of France?", "Paris", "Second city?", "Marseille"]

    fake.reply(tokens=["Toulouse"])
    run_reply(store, conversation, "Third city?", settings, Recorder(), after=again.id)  # a tab showing that branch
    assert "Second city?<end_of_turn>\n<start_of_turn>model\nMarseille" in fake.requests[-1].json["inputs"]
    assert "Berlin" not in fake.requests[-1].json["inputs"] and edited.status == "done"


def test_without_javascript_versions_can_be_switched_copied_and_exported(client, fake, store):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    fake.reply(tokens=["One"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Count"})
    fake.reply(tokens=["Two"])
    client.post(f"{chat}/regenerate", data={"csrf_token": token})
    page = client.get(chat).text
    assert "Two" in page and ">One<" not in page and VERSIONS.findall(page) == [("2", "2")]
    previous = re.search(r'name="message_id" value="([\w-]+)" aria-label="Previous version"', page).group(1)

    assert client.post(f"{chat}/branch", data={"csrf_token": token, "message_id": previous}).status_code == 302
    page = client.get(chat).text
    assert ">One<" in page and "Two" not in page and VERSIONS.findall(page) == [("1", "2")]
    assert client.post(f"{chat}/branch", data={"csrf_token": token, "message_id": "nope"}).status_code == 404

    exported = json.loads(client.get(f"{chat}/export.json").text)
    assert [m["content"] for m in exported["messages"]] == ["Count", "One", "Two"]
    assert exported["chosen"] == previous and exported["version"] == 2
    assert "Two" not in client.get(f"{chat}/export.md").text  # Markdown writes the branch shown
    upload = {"csrf_token": token, "file": (io.BytesIO(json.dumps(exported).encode()), "chat.json")}
    imported = client.post("/import", data=upload, content_type="multipart/form-data").location
    page = client.get(imported).text
    assert ">One<" in page and VERSIONS.findall(page) == [("1", "2")]  # every branch, the same one shown

    question = first_message_id(page)
    copy = client.post(f"{imported}/fork", data={"csrf_token": token, "message_id": question}).location
    page = client.get(copy.split("#")[0]).text
    assert "Count" in page and ">One<" not in page and "branch-position" not in page  # up to the question only


def test_a_version_one_export_still_imports_as_one_branch(client):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    older = {
        "format": "chatbot-conversation",
        "version": 1,
        "title": "Old",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}],
    }
    upload = {"csrf_token": token, "file": (io.BytesIO(json.dumps(older).encode()), "old.json")}
    page = client.get(client.post("/import", data=upload, content_type="multipart/form-data").location).text
    assert "Hi" in page and "Hello there" in page


def test_an_export_whose_messages_follow_nothing_before_them_imports_nothing(store):
    document = {
        "format": "chatbot-conversation",
        "version": 2,
        "title": "Bad",
        "messages": [{"id": "a", "parent": "b", "role": "user", "content": "Hi"}],
    }
    try:
        transfer.import_json(store, "alice", json.dumps(document).encode(), 1000)
    except transfer.ImportProblem as problem:
        assert "follows a message that does not come before it" in str(problem)
    else:
        raise AssertionError("imported")
    assert store.list_conversations("alice") == []


def two_answers_to_count(instances, fake):
    """A chat whose answer to "Count" has two versions, "One" then "Two" (shown); its client, page and the id of
    the first version."""
    chat = ChatClient(instances[0].url)
    fake.reply(tokens=["One"])
    chat.exchange("Count")
    fake.reply(tokens=["Two"])
    chat.post_form("/regenerate")
    page = chat.page()
    first = re.search(r'name="message_id" value="([\w-]+)" aria-label="Previous version"', page).group(1)
    return chat, page, first


def test_switching_over_the_socket_and_an_answer_streaming_in_another_tab(instances, fake):
    chat, page, question = two_answers_to_count(instances, fake)

    writing = chat.connect()
    fake.reply(tokens=[f" word{i}" for i in range(20)], delay=0.1)
    act(writing, "send", message="Go on", after=re.findall(r'name="after" value="([\w-]+)"', page)[0])
    written = read_until(writing, [], "word3")
    switching = chat.via(instances[1].url).connect()  # another tab, on another worker: it follows the answer
    assert "Go on" not in (followed := switching.recv()) and "assistant streaming" in followed
    act(switching, "switch", message_id=question)
    switched = read_until(switching, [], 'id="messages"')
    assert ">One<" in switched[-1] and "Go on" not in switched[-1] and VERSIONS.findall(switched[-1]) == [("1", "2")]
    read_until(writing, written, FINISHED)  # the answer in the other tab is not broken
    assert FINISHED.search(written[-1]).group(2) == "done" and "word19" in written[-1]
    ended = read_until(switching, [], 'id="send-button">Send<')  # the switching tab hears it ended, not its text
    assert "word1" not in "".join(ended) and not FINISHED.search("".join(ended))
    writing.close()
    switching.close()
    page = chat.page()
    assert ">One<" in page and "Go on" not in page  # the branch chosen last is the one shown on reload


def test_a_tab_open_before_an_answer_started_elsewhere_follows_it_once_it_switches(instances, fake):
    chat, page, first = two_answers_to_count(instances, fake)
    opened_before = chat.via(instances[1].url).connect()  # it has nothing to follow yet
    writing = chat.connect()
    tale = [f" word{i}" for i in range(40)]
    fake.reply(tokens=tale, delay=0.1)
    act(writing, "send", message="Go on", after=re.findall(r'name="after" value="([\w-]+)"', page)[0])
    read_until(writing, [], "word3")

    act(opened_before, "switch", message_id=first)
    switched = read_until(opened_before, [], 'id="messages"')
    assert ">One<" in switched[-1] and 'id="stop-button"' in switched[-1]  # one answer at a time, on any branch
    second = re.search(r'name="message_id" value="([\w-]+)" aria-label="Next version"', switched[-1])[1]
    act(opened_before, "switch", message_id=second)
    back = read_until(opened_before, [], FINISHED)
    live = [frame for frame in back[:-1] if ANSWER_TEXT.search(frame)]
    assert len(live) > 3  # it streams on, not only shown when it ends
    said = re.sub(r"<[^>]+>", "", shown_answer(back[:-1])).strip()
    assert "word5 " in said and "".join(tale).strip().startswith(said)  # nothing lost or said twice
    assert "word39" in back[-1] and FINISHED.search(back[-1]).group(2) == "done"
    writing.close()
    opened_before.close()
