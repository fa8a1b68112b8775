"""Attached files over HTTP: uploaded to a conversation, served to its owner alone, never as something that runs."""

import io
import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests

from chatbot.chat.attachments import PDF_SECONDS
from chatbot.web import create_app
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import csrf, first_message_id, open_chat
from tests.samples import nested_forms, pdf, png, text_page
from tests.servers import ChatClient, GunicornApp

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


@pytest.fixture
def image_app(tmp_path, fake):
    """Two models on the fake's OpenAI-compatible chat: one that takes images (so its settings say), one that
    does not."""
    models = [
        {"name": "Seeing", "id": "google/gemma-3-27b-it", "api": "chat", "url": fake.url + "/v1", "images": True},
        {"name": "Text only", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"},
    ]
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db",
            "HF_API_TOKEN": TOKEN,
            "MODELS": json.dumps(models),
            "ATTACHMENT_MAX_MB": 0.1,
        }
    )


def upload(client, chat, name, data):
    """Upload one file as the page's script does (the CSRF token in its header)."""
    token = csrf(client.get(chat).text)
    return client.post(f"{chat}/files", data={"file": (io.BytesIO(data), name)}, headers={"X-CSRF-Token": token})


def uploaded_id(response):
    return re.search(r'name="attachment" value="([\w-]+)"', response.text).group(1)


def test_an_upload_answers_with_its_chip_and_the_owner_gets_the_image_back(client):
    chat = open_chat(client)
    image = png()
    response = upload(client, chat, "../../cat.png", image)
    assert response.status_code == 200
    assert 'class="attachment"' in response.text and ">cat.png<" in response.text and "Remove" in response.text
    served = client.get(f"{chat}/files/{uploaded_id(response)}")
    assert served.status_code == 200 and served.data == image
    assert served.mimetype == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    assert "attachment" not in served.headers.get("Content-Disposition", "")
    assert "private" in served.headers["Cache-Control"]


def test_an_svg_with_script_is_served_only_as_a_text_download(client):
    chat = open_chat(client)
    served = client.get(f"{chat}/files/{uploaded_id(upload(client, chat, 'logo.svg', SVG))}")
    assert served.data == SVG
    assert served.mimetype == "text/plain"
    assert (
        served.headers["Content-Disposition"].startswith("attachment;")
        and "logo.svg" in served.headers["Content-Disposition"]
    )
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_a_text_file_is_served_as_utf8_text_with_its_charset_said_once(client):
    chat = open_chat(client)
    served = client.get(f"{chat}/files/{uploaded_id(upload(client, chat, 'notes.txt', 'café'.encode()))}")
    assert served.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_another_session_gets_404_for_my_file_even_through_its_own_chat(app, client):
    chat = open_chat(client)
    file_id = uploaded_id(upload(client, chat, "notes.txt", b"my secret notes"))
    stranger = app.test_client()
    assert stranger.get(f"{chat}/files/{file_id}").status_code == 404
    theirs = open_chat(stranger)
    assert stranger.get(f"{theirs}/files/{file_id}").status_code == 404
    assert b"my secret notes" not in stranger.get(f"{theirs}/files/{file_id}").data


def test_an_upload_needs_the_csrf_token(client):
    chat = open_chat(client)
    client.get(chat)
    response = client.post(f"{chat}/files", data={"file": (io.BytesIO(b"x"), "x.txt")})
    assert response.status_code == 400


def test_a_refused_upload_says_why_in_words(image_app):
    client = image_app.test_client()
    chat = open_chat(client)
    too_big = upload(client, chat, "big.txt", b"a" * (110 * 1024))
    assert too_big.status_code == 400
    assert (
        too_big.text == "big.txt is larger than 0.1 MB, the limit for a file. Attach a smaller file (or a part of it)."
    )
    binary = upload(client, chat, "a.exe", bytes(range(256)) * 4)
    assert binary.status_code == 400 and "Attach images, PDFs or text files" in binary.text


def test_files_go_with_their_conversation(client, store):
    chat = open_chat(client)
    file_id = uploaded_id(upload(client, chat, "notes.txt", b"kept until the chat goes"))
    assert client.get(f"{chat}/files/{file_id}").status_code == 200
    client.post(f"{chat}/delete", data={"csrf_token": csrf(client.get(chat).text)})
    assert client.get(f"{chat}/files/{file_id}").status_code == 404


def send_form(client, chat, text, files=(), **fields):
    """The composer's form without JavaScript: multipart, with its files."""
    data = {"csrf_token": csrf(client.get(chat).text), "message": text, **fields}
    data["files"] = [(io.BytesIO(content), name) for name, content in files]
    return client.post(f"{chat}/messages", data=data, content_type="multipart/form-data")


def test_a_text_file_and_a_pdf_go_into_the_prompt_with_their_names(client, fake):
    chat = open_chat(client)
    report = pdf(text_page("Revenue grew 12%"))
    posted = send_form(client, chat, "Summarise both", [("data.csv", b"a,b\n1,2\n"), ("report.pdf", report)])
    assert posted.status_code == 302
    prompt = fake.requests[-1].json["inputs"]  # the text-generation task: the files' text in the prompt itself
    assert "Attached file: data.csv\n```\na,b\n1,2\n\n```" in prompt
    assert "Attached file: report.pdf (1 pages)\n```\nRevenue grew 12%\n```" in prompt
    assert prompt.index("data.csv") < prompt.index("Summarise both")
    page = client.get(chat).text
    assert ">data.csv</a>" in page and ">report.pdf</a>" in page


def test_a_new_chat_from_here_takes_the_files_with_it_and_an_edit_keeps_them(client, fake):
    chat = open_chat(client)
    send_form(client, chat, "Read it", [("data.csv", b"a,b\n1,2\n")])
    page = client.get(chat).text
    question = first_message_id(page)
    copy = client.post(f"{chat}/fork", data={"csrf_token": csrf(page), "message_id": question}).location
    copy = copy.split("#")[0]
    file_url = re.search(r'href="(/c/[\w-]+/files/[\w-]+)" download>data.csv<', client.get(copy).text).group(1)
    assert file_url.startswith(copy[copy.index("/c/") :]) and client.get(file_url).data == b"a,b\n1,2\n"

    client.post(f"{chat}/messages/{question}/edit", data={"csrf_token": csrf(page), "message": "Read it again"})
    assert "a,b\n1,2" in fake.requests[-1].json["inputs"]  # the edited message, a version beside it, keeps the file


def test_an_image_goes_as_content_parts_to_a_model_that_takes_images(image_app, fake):
    client = image_app.test_client()
    chat = open_chat(client)
    posted = send_form(client, chat, "What is this?", [("red.png", png())], model="Seeing")
    assert posted.status_code == 302
    sent = fake.requests[-1].json
    assert sent["model"] == "google/gemma-3-27b-it"
    (question,) = [m for m in sent["messages"] if m["role"] == "user"]
    text, image = question["content"]
    assert text == {"type": "text", "text": "What is this?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KG")
    page = client.get(chat).text
    assert re.search(r'<img src="/c/[\w-]+/files/[\w-]+" alt="red.png"', page)


def test_an_image_for_a_model_without_images_is_refused_before_anything_is_saved(image_app, fake):
    client = image_app.test_client()
    chat = open_chat(client)
    refused = send_form(client, chat, "What is this?", [("red.png", png())], model="Text only")
    assert refused.status_code == 400
    assert "Text only does not take images, so nothing was sent (red.png). Pick a model that takes images" in (
        refused.text
    )
    assert fake.requests == []
    assert "What is this?</textarea>" in refused.text  # the message is still in the box, and not in the chat
    assert 'class="message user' not in refused.text


def test_too_much_text_for_the_context_window_is_refused_with_the_numbers(tmp_path, fake):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db",
            "API_URL": fake.task_url(),
            "HF_API_TOKEN": TOKEN,
            "CONTEXT_LENGTH": 1000,
            "MAX_NEW_TOKENS": 200,
        }
    )
    client = app.test_client()
    chat = open_chat(client)
    refused = send_form(client, chat, "Read this", [("long.txt", b"word " * 1000)])
    assert refused.status_code == 400
    assert "Your message and its files come to about 1,689 tokens, more than the 800 that" in refused.text
    assert fake.requests == []


def test_a_file_uploaded_by_the_script_is_sent_by_its_id_and_only_from_its_own_chat(client, fake):
    chat = open_chat(client)
    file_id = uploaded_id(upload(client, chat, "notes.md", b"# Notes\nbuy milk"))
    token = csrf(client.get(chat).text)
    client.post(f"{chat}/rename", data={"csrf_token": token, "title": "Notes"})  # not New chat's to go back to
    other = client.post("/c", data={"csrf_token": token}).location
    assert other != chat
    refused = send_form(client, other, "what do my notes say?", attachment=file_id)
    assert refused.status_code == 400 and "An attached file is no longer there. Attach it again." in refused.text
    assert send_form(client, chat, "what do my notes say?", attachment=file_id).status_code == 302
    assert (
        "Attached file: notes.md\n```\n# Notes\nbuy milk\n```\n\nwhat do my notes say?"
        in fake.requests[-1].json["inputs"]
    )


def test_a_file_sent_without_a_message_goes_alone_and_names_the_chat(client, fake):
    chat = open_chat(client)
    assert "Type a message first." in send_form(client, chat, " ").text
    assert send_form(client, chat, "", [("notes.md", b"# Notes\nbuy milk")]).status_code == 302
    assert (
        "<start_of_turn>user\nAttached file: notes.md\n```\n# Notes\nbuy milk\n```<end_of_turn>"
        in (fake.requests[-1].json["inputs"])
    )
    page = client.get(chat).text
    assert "<title>notes.md · Chat</title>" in page and ">notes.md</a>" in page
    assert "**You:**\n\n_Attached: notes.md_\n\n**" in client.get(f"{chat}/export.md").text


def test_a_refused_form_post_keeps_its_files_attached_for_the_next_try(tmp_path, fake):
    settings = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "MESSAGES_PER_MINUTE": 1}
    client = create_app({**settings, "API_URL": fake.task_url(), "HF_API_TOKEN": TOKEN}).test_client()
    chat = open_chat(client)
    assert send_form(client, chat, "First").status_code == 302
    refused = send_form(client, chat, "Read it", [("notes.md", b"buy milk")])
    assert refused.status_code == 429 and ">Read it</textarea>" in refused.text
    file_id = uploaded_id(refused)  # its chip is in the box, and goes with the next try unless its box is unticked
    assert f'<input type="checkbox" name="attachment" value="{file_id}" checked' in refused.text
    assert ">notes.md<" in refused.text and client.get(f"{chat}/files/{file_id}").data == b"buy milk"


def test_the_files_one_person_keeps_in_all_their_chats_are_limited(tmp_path, fake):
    settings = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "FILES_KEPT_MB": 0.01}
    app = create_app({**settings, "API_URL": fake.task_url(), "HF_API_TOKEN": TOKEN})
    client = app.test_client()
    chat = open_chat(client)
    file_id = uploaded_id(upload(client, chat, "a.txt", b"a" * 6000))
    assert send_form(client, chat, "Read it", attachment=file_id).status_code == 302
    other = client.post("/c", data={"csrf_token": csrf(client.get(chat).text)}).location
    too_much = (
        "Your chats keep 6 KB of attached files and shared snapshots, and with 6 KB more they would pass the 0.01 MB"
        " this chat keeps for each person. Delete chats, or revoke share links, that you no longer need, then {}."
    )
    refused = upload(client, other, "b.txt", b"b" * 6000)
    assert (refused.status_code, refused.text) == (400, too_much.format("attach it again"))
    refused = send_form(client, other, "Read this", [("b.txt", b"b" * 6000)])  # without JavaScript
    assert refused.status_code == 400 and too_much.format("attach it again") in refused.text
    page = client.get(chat).text
    forked = client.post(f"{chat}/fork", data={"csrf_token": csrf(page), "message_id": first_message_id(page)})
    assert forked.status_code == 400 and too_much.format("start the new chat again") in forked.text
    with client.session_transaction() as session:
        assert len(app.extensions["chat_store"].list_conversations(session["owner"])) == 2  # no copy was made
    client.post(f"{chat}/delete", data={"csrf_token": csrf(client.get(chat).text)})
    assert upload(client, other, "b.txt", b"b" * 6000).status_code == 200  # room again


def test_more_files_than_a_message_takes_are_refused(client):
    chat = open_chat(client)
    files = [(f"{n}.txt", b"x") for n in range(5)]
    refused = send_form(client, chat, "many", files)
    assert refused.status_code == 400 and "A message takes at most 4 files; this one has 5. Remove 1." in refused.text


def test_a_share_and_an_import_show_a_files_name_but_never_the_file(client, fake):
    chat = open_chat(client)
    send_form(client, chat, "Look", [("secret.txt", b"not for the link")])
    token = csrf(client.get(chat).text)
    made = client.post(f"{chat}/shares", data={"csrf_token": token, "expires": "never"})
    link = re.search(r"(/s/[\w.-]+)", made.text).group(1)
    shared = client.get(link).text
    assert "secret.txt" in shared and "(not included)" in shared
    assert "/files/" not in shared and "not for the link" not in shared
    export = json.loads(client.get(f"{chat}/export.json").data)
    assert "not for the link" not in json.dumps(export)
    export["messages"][0]["meta"]["attachments"] = [
        {"id": "someone-elses", "name": "../../x<script>", "kind": "<b>"},
        "not a file",
    ]
    imported = client.post(
        "/import",
        data={"csrf_token": token, "file": (io.BytesIO(json.dumps(export).encode()), "e.json")},
        content_type="multipart/form-data",
    )
    page = client.get(imported.location).text
    assert "x&lt;script&gt;" in page and "someone-elses" not in page and '<li class="attachment text">' in page


def test_a_copy_of_a_shared_chat_with_files_answers_and_names_them_as_gone(client, fake):
    chat = open_chat(client)
    send_form(client, chat, "Look", [("secret.txt", b"not for the link")])
    made = client.post(f"{chat}/shares", data={"csrf_token": csrf(client.get(chat).text), "expires": "never"})
    link = re.search(r"(/s/[\w.-]+)", made.text).group(1)
    copy = client.post(f"{link}/copy", data={"csrf_token": csrf(client.get(link).text)}).location
    fake.reply(tokens=["Fine"])
    answered = send_form(client, copy, "And now?")
    assert answered.status_code == 302 and "Fine" in client.get(copy).text
    prompt = fake.requests[-1].json["inputs"]
    assert "[Attached file secret.txt: no longer kept]" in prompt and "not for the link" not in prompt


def test_a_share_serves_the_files_of_its_snapshot_only_when_the_owner_includes_them(app, client, fake):
    chat = open_chat(client)
    send_form(client, chat, "Look", [("shared.txt", b"for the link")])
    other_id = uploaded_id(upload(client, chat, "kept.txt", b"never sent, never shared"))
    token = csrf(client.get(chat).text)
    made = [
        client.post(f"{chat}/shares", data={"csrf_token": token, "expires": "never", **extra})
        for extra in ({}, {"with_files": "on"})
    ]
    made_link = r'id="made-link" value="http://localhost(/s/[\w.-]+)"'  # the link, in its field beside the form
    plain, link = (re.search(made_link, each.text).group(1) for each in made)

    stranger = app.test_client()
    assert "(not included)" in stranger.get(plain).text
    file_url = re.search(r'href="(/s/[\w.-]+/files/[\w-]+)" download>shared.txt<', stranger.get(link).text).group(1)
    served = stranger.get(file_url)
    assert served.data == b"for the link" and served.headers["X-Content-Type-Options"] == "nosniff"
    assert stranger.get(f"{link}/files/{other_id}").status_code == 404  # in the chat, not in the snapshot
    assert stranger.get(file_url.replace(link, plain)).status_code == 404  # that link was made without files
    client.post(f"{chat}/delete", data={"csrf_token": token})
    assert stranger.get(file_url).status_code == 404


def test_a_pdf_that_would_pin_a_cpu_is_refused_at_its_deadline_while_its_gevent_worker_answers_others(tmp_path, fake):
    """Read on the worker's own greenlet, forms that draw forms held one gevent worker for a minute (/healthz
    too) until gunicorn killed it with all its chats; read in a process of its own, killed at the deadline."""
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, WORKER_CLASS="gevent")
    with GunicornApp(environment, workers=1) as server:
        chat = ChatClient(server.url)
        token = csrf(chat.page())
        answer: list[requests.Response] = []

        def attach() -> None:
            upload = {"file": ("forms.pdf", nested_forms(), "application/pdf")}
            url = chat.page_url + "/files"
            answer.append(chat.http.post(url, files=upload, headers={"X-CSRF-Token": token}, timeout=60))

        started = time.monotonic()
        uploading = threading.Thread(target=attach)
        uploading.start()
        slowest = 0.0
        while uploading.is_alive():
            asked = time.monotonic()
            assert requests.get(server.url + "/healthz", timeout=5).ok
            slowest = max(slowest, time.monotonic() - asked)
            time.sleep(0.2)
        uploading.join()
        assert slowest < 0.5, slowest
        assert time.monotonic() - started < PDF_SECONDS + 2
        assert answer[0].status_code == 400
        assert f"Reading forms.pdf took longer than {PDF_SECONDS:g} s, so it was stopped" in answer[0].text
        worker = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()[0]
        assert Path(f"/proc/{worker}/task/{worker}/children").read_text() == ""  # the reader was killed
