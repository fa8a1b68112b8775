"""The end of an answer in a real browser: the body streamed stays, with only what it lacked sent, and is what a
reload of the page shows."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import tool_chat_environment
from tests.servers import GunicornApp


@pytest.fixture(scope="module")
def tools_app(tmp_path_factory, fake_hf, mcp_http):
    """The app under gunicorn on the fake router, with the fake MCP server trusted to run."""
    environment = tool_chat_environment(tmp_path_factory.mktemp("finished"), fake_hf, mcp_http, "auto")
    with GunicornApp(environment) as server:
        yield server


BEFORE_THE_CALL = ["<think>", "Echo first,", " then <b>show</b>.", "</think>"]
BEFORE_THE_CALL += ["Let me ", "look it up:\n\n", "- first **point**\n", "- second point\n\n", "Calling now."]
AFTER_THE_CALL = ["It said ", "*hi* twice.\n\n", "```python\n", "print('hi')\n", "print('hi')\n", "```\n\n"]
AFTER_THE_CALL += ["| tool | times |\n", "|---|---|\n", "| echo | 2 |\n\n", "1. one\n", "2. two\n\n", "That is all."]


def test_a_streamed_answer_ends_as_a_reload_shows_it_without_its_body_sent_again(page, tools_app, fake, mcp_log):
    frames = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    page.goto(tools_app.url + "/")
    fake.reply(tokens=BEFORE_THE_CALL, tool_calls=[("call_1", "web__echo", '{"text": "hi", "times": 2}')], delay=0.1)
    fake.reply(tokens=AFTER_THE_CALL, delay=0.1)
    page.fill("#message-input", "Echo and show me markdown")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.streaming .body li")).to_have_count(2)
    done = page.locator(".message.assistant.done .body")
    expect(done).to_contain_text("That is all.", timeout=15_000)

    (ended,) = [frame for frame in frames if 'class="message assistant done" hx-swap-oob="true"' in frame]
    assert "first <strong>point</strong>" not in ended and "print" not in ended and "<table>" not in ended
    assert "Echo first" not in ended and "Thought for" in ended  # its reasoning kept too, folded anew
    expect(done.locator(".code-head")).to_have_count(1)  # chat.js gave the finished code its copy button
    streamed = done.inner_html()
    assert page.locator(".live-open, .live-tail, [hx-preserve]").count() == 0
    expect(page.locator(".message.assistant.done .body > p")).to_have_text(
        ["Let me look it up:", "Calling now.", "It said hi twice.", "That is all."]
    )
    expect(done.locator("> details.tool-call.done summary")).to_contain_text("Called web__echo")
    assert done.evaluate("body => body.className") == "body markdown"
    reasoning = page.locator(".message.assistant.done .reasoning")
    expect(reasoning.locator("summary")).to_contain_text("Thought for")
    thought = reasoning.locator(".plain").inner_html()
    assert thought == "Echo first, then &lt;b&gt;show&lt;/b&gt;." and reasoning.get_attribute("open") is None

    page.reload()
    reloaded = page.locator(".message.assistant.done .body")
    expect(reloaded.locator(".code-head")).to_have_count(1)
    assert reloaded.inner_html() == streamed
    assert page.locator(".message.assistant.done .reasoning .plain").inner_html() == thought
    assert mcp_log.logged() == ["echo hi"]
