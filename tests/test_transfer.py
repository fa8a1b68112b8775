"""Export as Markdown and JSON; import a JSON export as a new conversation, or nothing at all."""

import io
import json

import pytest

from chatbot.chat import transfer
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
