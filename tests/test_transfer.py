"""Export as Markdown and JSON; import a JSON export as a new conversation, or nothing at all."""

import io
import json

import pytest

from chatbot.chat import transfer
from chatbot.services import mcp_client
from tests.helpers import csrf, open_chat


@pytest.fixture
def chat_with_answers(client, fake):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    fake.reply(tokens=["Use **print**:\n\n```python\nprint(1)\n```"])
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "How do I print?"})
    fake.reply(tokens=["Half"], cut_after=1)
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "More?"})
    return chat, token


def test_markdown_export(client, chat_with_answers):
    chat, _ = chat_with_answers
    response = client.get(f"{chat}/export.md")
    assert response.headers["Content-Disposition"] == 'attachment; filename="How-do-I-print.md"'
    text = response.text
    assert text.startswith("# How do I print?\n")
    assert "**You:**\n\nHow do I print?" in text and "```python\nprint(1)\n```" in text
    assert "_(error: The answer from" in text


def test_json_round_trip(client, chat_with_answers):
    chat, token = chat_with_answers
    exported = client.get(f"{chat}/export.json")
    document = json.loads(exported.text)
    assert document["format"] == "chatbot-conversation" and len(document["messages"]) == 4
    imported = client.post("/import", data={"csrf_token": token, "file": (io.BytesIO(exported.data), "x.json")})
    assert imported.status_code == 302 and imported.location != chat
    again = json.loads(client.get(f"{imported.location}/export.json").text)
    strip = [{k: m[k] for k in ("role", "content", "status", "error")} for m in document["messages"]]
    assert [{k: m[k] for k in ("role", "content", "status", "error")} for m in again["messages"]] == strip
    assert again["title"] == document["title"]
    assert '<span class="nb">print</span>' in client.get(imported.location).text


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not json", "That file is not JSON."),
        (b'{"format": "other"}', "not a conversation exported from this chat"),
        (b'{"format": "chatbot-conversation", "version": 9}', "this chat reads version 1"),
        (
            json.dumps(
                {
                    "format": "chatbot-conversation",
                    "version": 2,
                    "title": "t",
                    "messages": [
                        {"id": "a", "role": "user", "content": "hi"},
                        {"id": "b", "parent": ["a"], "role": "assistant", "content": "x"},
                    ],
                }
            ).encode(),
            "Message 2 of the export follows a message that does not come before it.",
        ),
        (
            json.dumps(
                {
                    "format": "chatbot-conversation",
                    "version": 1,
                    "title": "t",
                    "messages": [{"role": "user", "content": "ok"}, {"role": "system", "content": "x"}],
                }
            ).encode(),
            "Message 2 of the export has the role &#39;system&#39;",
        ),
        (
            json.dumps({"format": "chatbot-conversation", "version": 1, "title": "t", "messages": []}).encode(),
            "The export has no messages.",
        ),
    ],
)
def test_a_malformed_file_imports_nothing(client, fake, content, words):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    before = client.get(chat).text.count('<li><a href="/c/')
    response = client.post("/import", data={"csrf_token": token, "file": (io.BytesIO(content), "bad.json")})
    assert response.status_code == 400
    assert "Nothing was imported: " in response.text and words in response.text
    assert client.get(chat).text.count('<li><a href="/c/') == before


def test_imported_html_is_never_trusted(client):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    document = {
        "format": "chatbot-conversation",
        "version": 1,
        "title": "<b>t</b>",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "<script>alert(1)</script>", "html": "<script>alert(2)</script>"},
        ],
    }
    imported = client.post(
        "/import", data={"csrf_token": token, "file": (io.BytesIO(json.dumps(document).encode()), "x.json")}
    )
    page = client.get(imported.location).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;t&lt;/b&gt;" in page


def test_exports_belong_to_their_session(app, client, chat_with_answers):
    chat, _ = chat_with_answers
    assert app.test_client().get(f"{chat}/export.json").status_code == 404
    assert client.get(f"{chat}/export.pdf").status_code == 404


def test_an_imports_meta_keeps_only_what_it_knows_with_its_type(client):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    meta = {"reasoning": "x", "reasoning_seconds": "5", "tokens": float("nan"), "seconds": float("inf"), "html": "<b>"}
    document = {
        "format": "chatbot-conversation",
        "version": 2,
        "title": "Odd",
        "messages": [
            {"id": 1, "role": "user", "content": "hi"},
            {"id": 2, "parent": 1, "role": "assistant", "content": "hello", "meta": {**meta, "model": "m"}},
        ],
    }
    upload = {"csrf_token": token, "file": (io.BytesIO(json.dumps(document).encode()), "odd.json")}
    imported = client.post("/import", data=upload, content_type="multipart/form-data").location
    page = client.get(imported)
    assert page.status_code == 200 and "hello" in page.text and "<summary>Reasoning</summary>" in page.text
    exported = json.loads(client.get(f"{imported}/export.json").text)
    assert exported["messages"][1]["meta"] == {"reasoning": "x", "model": "m"}
    assert exported["messages"][1]["parent"] == exported["messages"][0]["id"]  # numbers as ids still link
    assert client.get(f"{imported}/export.md").status_code == 200


def test_an_import_too_large_to_render_is_refused_before_anything_is_rendered():
    document = {"format": "chatbot-conversation", "version": 1, "title": "t"}
    document["messages"] = [{"role": "assistant", "content": "[" * 1000}] * 60  # markdown-it's slowest text
    with pytest.raises(transfer.ImportProblem, match="That export holds 60 messages and 60,000 characters; this chat"):
        transfer.read_export(json.dumps(document).encode(), max_chars=1000)  # 50,000 characters at most


@pytest.mark.parametrize(
    "heavy",
    [
        {"meta": {"reasoning": "r" * 30_000}},  # 2 x 30,000 characters of reasoning, little text
        {"status": "error", "error": {"message": "e" * 30_000}},  # or of an error's words
    ],
)
def test_an_imports_size_counts_its_reasoning_and_errors_not_only_its_text(heavy):
    document = {"format": "chatbot-conversation", "version": 1, "title": "t"}
    document["messages"] = [{"role": "assistant", "content": "short", **heavy}] * 2
    with pytest.raises(transfer.ImportProblem, match="That export holds 2 messages and 60,010 characters; this chat"):
        transfer.read_export(json.dumps(document).encode(), max_chars=1000)  # 50,000 characters at most


@pytest.fixture
def tools_client(make_app, fake, mcp_log):
    servers = json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}])
    app = make_app(
        AUTH="none", API_URL=fake.url + "/v1", MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", MCP_SERVERS=servers
    )
    yield app.test_client()
    mcp_client.forget_connections()


def import_document(client, token, messages):
    document = {"format": "chatbot-conversation", "version": 2, "title": "Tools", "messages": messages}
    upload = {"csrf_token": token, "file": (io.BytesIO(json.dumps(document).encode()), "tools.json")}
    return client.post("/import", data=upload, content_type="multipart/form-data")


def test_tool_calls_go_out_in_both_exports_and_come_back_whole_with_a_json_import(tools_client, fake):
    client = tools_client
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "<b>hi</b> ```", "times": 2}')])
    fake.reply(tokens=["It said it twice."])
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    client.post(f"{chat}/messages", data={"csrf_token": token, "message": "Echo twice"})
    markdown = client.get(f"{chat}/export.md").text
    assert "> **Tool call · done** · " in markdown
    assert '> ````\n> web__echo({"text": "<b>hi</b> ```", "times": 2})\n> ````' in markdown  # a fence it cannot close
    assert "> Result:\n>\n> ````\n> <b>hi</b> ``` <b>hi</b> ```\n> ````" in markdown
    document = json.loads(client.get(f"{chat}/export.json").text)
    (record,) = document["messages"][1]["meta"]["tool_calls"]
    assert record["result"] == "<b>hi</b> ``` <b>hi</b> ```" and record["status"] == "done"
    imported = client.post(
        "/import", data={"csrf_token": token, "file": (io.BytesIO(json.dumps(document).encode()), "x.json")}
    ).location
    again = json.loads(client.get(f"{imported}/export.json").text)
    assert again["messages"][1]["meta"]["tool_calls"] == [record]
    page = client.get(imported).text
    assert '<details class="tool-call done" id="call-' in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi" not in page


def test_an_imports_forged_tool_calls_are_cut_to_size_or_refused(client):
    chat = open_chat(client)
    token = csrf(client.get(chat).text)
    forged = {
        "id": "c" * 10_000,
        "name": "<script>alert(1)</script>",
        "arguments": "{}",
        "result": "r" * 300_000,
        "status": "done",
        "seconds": float("inf"),
        "images": [{"id": "someone-elses-file", "mime": "image/png"}],
        "html": "<script>alert(2)</script>",
    }
    small = {"id": "c", "name": "n", "arguments": "{}", "result": "r", "status": "done"}
    user = {"id": 1, "role": "user", "content": "hi"}
    response = import_document(
        client,
        token,
        [
            user,
            {
                "id": 2,
                "parent": 1,
                "role": "assistant",
                "content": "x",
                "meta": {"tool_calls": [forged, *[small] * 149]},
            },
        ],
    )
    assert response.status_code == 302
    (_, answer) = json.loads(client.get(f"{response.location}/export.json").text)["messages"]
    records = answer["meta"]["tool_calls"]
    assert len(records) == 100 and set(records[0]) == {"id", "name", "arguments", "result", "status"}
    assert len(records[0]["id"]) == 200 and records[0]["result"].endswith("only the first 20,000 are shown.]")
    page = client.get(response.location).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for wrong, words in [
        (
            {"result": {"html": "<b>"}},
            "Message 2 of the export is not valid: its tool call 1 has no text for &#39;result&#39;.",
        ),
        ({"status": "<b>ran</b>"}, "its tool call 1 has the status &#39;&lt;b&gt;ran&lt;/b&gt;&#39;"),
    ]:
        answer = {
            "id": 2,
            "parent": 1,
            "role": "assistant",
            "content": "x",
            "meta": {"tool_calls": [{**forged, **wrong}]},
        }
        refused = import_document(client, token, [user, answer])
        assert refused.status_code == 400 and words in refused.text
    not_a_list = {"id": 2, "parent": 1, "role": "assistant", "content": "x", "meta": {"tool_calls": "called"}}
    assert "its tool calls are not a list" in import_document(client, token, [user, not_a_list]).text
