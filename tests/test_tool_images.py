"""The images a tool returns (chatbot/chat/tool_images.py), from the real fake MCP server: shown to a model that
takes images in a user turn after the tool turns, kept as files of the chat served to its owner alone, shown in the
call's block; only PNG, JPEG, GIF and WebP by their bytes, a few a call, each bounded."""

from __future__ import annotations

import base64
import json
import re

import pytest

from chatbot.chat import tool_images
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services import mcp_client
from chatbot.services.inference import Backend, Parameters
from chatbot.services.tool_servers import ToolServer
from tests.fakes.hf_server import TOKEN
from tests.fakes.mcp_server import tiny_png
from tests.helpers import Recorder, csrf, new_store, open_chat

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(autouse=True)
def fresh_sessions():
    yield
    mcp_client.forget_connections()


def settings(fake, mcp, takes_images=True) -> ReplySettings:
    backend = Backend(api="chat", url=fake.url + "/v1", model_id=MODEL, token=TOKEN)
    servers = (ToolServer("web", "auto", url=mcp.url),)
    return ReplySettings(backend=backend, parameters=Parameters(), tool_servers=servers, takes_images=takes_images)


def call_then_answer(fake, mcp, tool, arguments="{}", takes_images=True):
    fake.reply(tokens=[], tool_calls=[("call_1", tool, arguments)])
    fake.reply(tokens=["Seen."])
    store, conversation = new_store()
    message = run_reply(store, conversation, "Look", settings(fake, mcp, takes_images), Recorder())
    (record,) = message.meta["tool_calls"]
    return store, conversation, record, fake.requests[-1].json["messages"]


def image_urls(messages) -> list[str]:
    return [
        part["image_url"]["url"]
        for m in messages
        if isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]


def test_a_png_a_tool_returns_is_kept_as_a_file_and_shown_to_a_model_that_takes_images_after_the_tool_turn(
    fake, mcp_log
):
    store, conversation, record, messages = call_then_answer(fake, mcp_log, "web__image")
    (image,) = record["images"]
    assert (image["kind"], image["mime"], image["name"]) == ("image", "image/png", "web__image-1.png")
    assert store.load_file(conversation, image["id"])[1] == tiny_png()
    assert [m["role"] for m in messages[-3:]] == ["assistant", "tool", "user"]
    assert messages[-2]["content"] == "[image: image/png]"  # the tool turn: text alone
    assert messages[-1]["content"][0] == {"type": "text", "text": "The images the tools returned, in order:"}
    assert image_urls(messages) == ["data:image/png;base64," + base64.b64encode(tiny_png()).decode()]


def test_a_model_that_takes_no_images_reads_that_there_was_one_and_the_page_still_shows_it(fake, mcp_log):
    _, _, record, messages = call_then_answer(fake, mcp_log, "web__image", takes_images=False)
    assert len(record["images"]) == 1
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "[image: image/png]"}
    assert image_urls(messages) == []


def test_an_svg_declared_as_a_png_is_never_kept_shown_or_passed_on_and_the_model_is_told(fake, mcp_log):
    store, conversation, record, messages = call_then_answer(fake, mcp_log, "web__disguised")
    assert "images" not in record and store.kept_size("alice") == 0
    assert record["result"].endswith("[Not shown: an image declared as 'image/png' is not PNG, JPEG, GIF or WebP.]")
    assert image_urls(messages) == [] and "Not shown" in messages[-1]["content"]


def test_a_call_keeps_at_most_a_few_images_and_says_the_rest_were_left_out(fake, mcp_log):
    _, _, record, messages = call_then_answer(fake, mcp_log, "web__album", '{"count": 6}')
    assert len(record["images"]) == tool_images.IMAGES_PER_CALL == 4 and len(image_urls(messages)) == 4
    assert record["result"].endswith(f"[Not shown: only {tool_images.IMAGES_PER_CALL} images of a call are shown.]")


def test_an_image_too_large_is_not_kept():
    store, conversation = new_store()
    large = tiny_png() + b"\0" * tool_images.IMAGE_MAX_BYTES
    listed, note = tool_images.kept(
        store, conversation, "web__image", [("image/png", large), ("image/png", tiny_png())]
    )
    assert [image["size"] for image in listed] == [len(tiny_png())]
    assert note == "[Not shown: an image of 4.0 MB is larger than the most shown.]"


def test_the_calls_block_shows_its_image_served_to_the_chats_owner_alone_never_inline(make_app, fake, mcp_log):
    models = [{"id": MODEL, "url": fake.url + "/v1", "images": True}]
    servers = [{"name": "web", "url": mcp_log.url, "trust": "auto"}]
    app = make_app(AUTH="none", MODELS=json.dumps(models), MCP_SERVERS=json.dumps(servers))
    client = app.test_client()
    fake.reply(tokens=[], tool_calls=[("call_1", "web__image", "{}"), ("call_2", "web__disguised", "{}")])
    fake.reply(tokens=["A red dot."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Draw"})
    page = client.get(chat).text
    block = page[page.index('<details class="tool-call done" id="call-') :]
    block = block[: block.index("</details>")]
    (url,) = re.findall(r'<img src="(/c/[^"]+/files/[^"]+)"', block)
    assert url.startswith(chat + "/files/") and "data:image" not in page and "alert(" not in page
    served = client.get(url)
    assert (served.status_code, served.mimetype, served.data) == (200, "image/png", tiny_png())
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert app.test_client().get(url).status_code == 404  # another browser
    markdown = client.get(f"{chat}/export.md").text
    assert "> _Images: web__image-1.png (not in the export)_" in markdown

    made = client.post(
        f"{chat}/shares",
        data={
            "csrf_token": csrf(client.get(chat).text),
            "expires": "never",
            "with_tool_results": "on",
            "with_files": "on",
        },
    )
    link = re.search(r'id="made-link" value="http://localhost(/s/[\w.-]+)"', made.text).group(1)
    shared = app.test_client().get(link).text
    assert 'web__image-1.png</span> <span class="attachment-size">(not included)' in shared and "/files/" not in shared

    answer_id = json.loads(client.get(f"{chat}/export.json").text)["messages"][1]["id"]
    copy = client.post(f"{chat}/fork", data={"csrf_token": csrf(client.get(chat).text), "message_id": answer_id})
    copy_page = client.get(copy.location.split("#")[0]).text
    (copied,) = re.findall(r'<img src="(/c/[^"]+/files/[^"]+)"', copy_page)
    assert copied != url and client.get(copied).data == tiny_png()  # the new chat has its own copy


def test_an_answer_keeps_at_most_a_few_images_in_all_and_none_past_the_room_for_files():
    store, conversation = new_store()
    images = [("image/png", tiny_png())] * 2
    listed, note = tool_images.kept(
        store, conversation, "web__album", images, earlier=tool_images.IMAGES_PER_ANSWER - 1
    )
    assert (
        len(listed) == 1 and note == f"[Not shown: only {tool_images.IMAGES_PER_ANSWER} images of an answer are shown.]"
    )
    room = len(tiny_png()) * 2.5 / (1024 * 1024)  # with the one kept above, room for one more
    listed, note = tool_images.kept(store, conversation, "web__album", images * 2, kept_mb=room)
    assert len(listed) == 1 and note == "[Not shown: the room this chat keeps for its user's files is full.]"
