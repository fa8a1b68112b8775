"""A tool call's card in a real browser: it shows in the tab that asked and in one that follows, either answers it
over the socket, the other's card goes away, and the answer goes on."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import tool_chat_environment
from tests.e2e.test_accessibility import AXE, LOOKS, SERIOUS
from tests.servers import GunicornApp


@pytest.fixture(scope="module")
def asking_app(tmp_path_factory, fake_hf, mcp_http):
    """The app under gunicorn on the fake router, with the fake MCP server at its default trust (ask)."""
    environment = tool_chat_environment(tmp_path_factory.mktemp("approvals"), fake_hf, mcp_http, "ask")
    with GunicornApp(environment) as server:
        yield server


def test_the_card_shows_in_both_tabs_and_run_once_in_either_goes_on(page, asking_app, fake, mcp_log):
    page.goto(asking_app.url + "/")
    fake.reply(tokens=["Let me echo."], tool_calls=[("call_1", "web__echo", '{"text": "<b>hi</b>", "times": 2}')])
    fake.reply(tokens=["It said hi twice."])
    page.fill("#message-input", "Echo hi twice")
    page.keyboard.press("Enter")
    card = page.locator(".approval form")
    expect(card).to_contain_text("The model wants to call web.echo with")
    expect(card.locator("pre")).to_have_text('{\n  "text": "<b>hi</b>",\n  "times": 2\n}')  # as text, not HTML
    expect(card.get_by_role("button")).to_have_text(["Run once", "Always for this tool", "Deny"])
    other = page.context.new_page()  # another tab of the chat: the card as saved
    other.goto(page.url)
    posted = []
    other.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    other.get_by_role("button", name="Run once").click()
    for tab in (page, other):
        expect(tab.locator(".message.assistant.done .body > p")).to_have_text(["Let me echo.", "It said hi twice."])
        expect(tab.locator(".approval form")).to_have_count(0)
        expect(tab.locator(".tool-call.done summary")).to_contain_text("Called web__echo")
    assert mcp_log.logged() == ["echo <b>hi</b>"]
    assert posted == []  # answered over the socket


def test_deny_tells_the_model_and_the_chat_shows_the_call_declined(page, asking_app, fake, mcp_log):
    page.goto(asking_app.url + "/")
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "no"}')])
    fake.reply(tokens=["Understood."])
    page.fill("#message-input", "Echo no")
    page.keyboard.press("Enter")
    expect(page.locator(".approval form")).to_be_visible()
    expect(page.locator(".message.assistant.streaming .thinking")).to_be_hidden()  # it waits for the user
    page.locator(".approval").get_by_role("button", name="Deny").click()
    expect(page.locator(".message.assistant.done .body > p")).to_have_text("Understood.")
    expect(page.locator(".tool-call.denied summary")).to_contain_text("The user declined this call.")
    assert mcp_log.logged() == []


@pytest.mark.parametrize("look", ["light", "dark"])
def test_the_card_and_the_tools_allowed_always_pass_axe_and_revoke_asks_again(browser, asking_app, fake, look):
    context = browser.new_context(**LOOKS[look], bypass_csp=True)  # axe is injected as an inline script
    page = context.new_page()
    try:
        page.goto(asking_app.url + "/")
        fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "hi"}')])
        fake.reply(tokens=["Echoed."])
        page.fill("#message-input", "Echo hi")
        page.keyboard.press("Enter")
        expect(page.locator(".approval form")).to_be_visible()
        page.add_script_tag(path=str(AXE))
        assert page.evaluate(SERIOUS) == []
        page.get_by_role("button", name="Always for this tool").click()
        expect(page.locator(".message.assistant.done .body > p")).to_have_text("Echoed.")
        page.reload()
        page.locator("#settings-panel > summary").click()
        allowed = page.locator("#settings-panel form", has_text="web.echo")
        expect(allowed.get_by_role("button", name="Revoke")).to_be_visible()
        page.add_script_tag(path=str(AXE))
        assert page.evaluate(SERIOUS) == []
        with page.expect_navigation():
            allowed.get_by_role("button", name="Revoke").click()
        expect(page.locator("#settings-panel form", has_text="web.echo")).to_have_count(0)
    finally:
        context.close()


def test_without_javascript_each_button_posts_and_the_page_comes_back_with_the_answer(browser, asking_app, fake):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(asking_app.url + "/")
        fake.reply(tokens=["First."], tool_calls=[("call_1", "web__echo", '{"text": "one"}')])
        fake.reply(tokens=[], tool_calls=[("call_2", "web__fail", '{"reason": "two"}')])  # another tool: asked too
        fake.reply(tokens=["Both answered."])
        page.fill("#message-input", "Echo, then fail")
        page.click("#send-button")
        expect(page.locator(".approval form")).to_contain_text("The model wants to call web.echo with")
        page.get_by_role("button", name="Run once").click()
        expect(page.locator(".approval form")).to_contain_text("The model wants to call web.fail with")
        page.get_by_role("button", name="Deny").click()
        expect(page.locator(".message.assistant.done .body > p")).to_have_text(["First.", "Both answered."])
        expect(page.locator(".tool-call summary")).to_have_count(2)
        expect(page.locator(".tool-call.denied summary")).to_contain_text("The user declined this call.")
    finally:
        context.close()
