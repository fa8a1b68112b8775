"""A real headless Chromium (Debian's package) driven by Playwright; any console error fails the test. And a site
with every kind of page, for the tests that visit them all (phone, accessibility)."""

import json

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import PASSWORD
from tests.servers import GunicornApp

CHROMIUM = "/usr/bin/chromium"
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def tool_chat_environment(tmp_path, fake, mcp, trust: str = "auto") -> dict[str, str]:
    """A chat on the fake router's chat completions with the fake MCP server's tools, run without asking (`trust`
    "auto") or after the user's yes ("ask")."""
    return app_environment(
        tmp_path,
        API_URL=fake.url + "/v1",
        INFERENCE_API="chat",
        MODEL_ID="meta-llama/Llama-3.1-8B-Instruct",
        HF_API_TOKEN=TOKEN,
        READ_TIMEOUT="5",
        MCP_SERVERS=json.dumps([{"name": "web", "url": mcp.url, "trust": trust}]),
    )


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))
    yield page
    context.close()
    assert problems == [], f"the browser reported errors: {problems}"


# An answer with everything that can be wider than a phone: a table, code, a formula, a long link.
WIDE_ANSWER = [
    "A table wider than a phone:\n\n| "
    + " | ".join(f"column {n}" for n in range(12))
    + " |\n|"
    + "---|" * 12
    + "\n| "
    + " | ".join(f"value_{n}_long_enough" for n in range(12))
    + " |\n\n```python\n"
    + "print('"
    + "a long line of code " * 12
    + "')\n```\n\nAnd a long formula: $$"
    + "+".join(f"x_{{{n}}}" for n in range(60))
    + "$$\n\nA link with no spaces: https://example.org/"
    + "averyveryverylongpath" * 6
]


@pytest.fixture(scope="session")
def site(tmp_path_factory, fake_hf):
    """A chat with accounts: ada the admin, with a chat of wide things and a share link; bob waits for approval."""
    environment = app_environment(
        tmp_path_factory.mktemp("phone"), API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN, AUTH="local"
    )
    with GunicornApp(environment) as app:
        yield app


def sign_up(page, url, name):
    page.goto(url + "/sign-up")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


@pytest.fixture(scope="session")
def pages(site, browser, fake_hf):
    """The address of each page: the chat, its delete question, its question's edit page, a share of it, sign-in,
    sign-up, admin; and ada's cookies."""
    context = browser.new_context()
    ada = context.new_page()
    sign_up(ada, site.url, "ada")
    sign_up(browser.new_context().new_page(), site.url, "bob")
    ada.goto(site.url + "/")
    fake_hf.reply(tokens=WIDE_ANSWER, reasoning=["Thinking about tables."])
    ada.fill("#message-input", "Show me wide things")
    ada.keyboard.press("Enter")
    expect(ada.locator(".message.assistant.done")).to_be_visible()
    chat = ada.url
    question = ada.locator(".message.user").get_attribute("id").removeprefix("msg-")
    ada.click("text=Rename, export or delete")
    ada.click("text=Make a share link")
    shared = ada.locator("#made-link").input_value()
    cookies = context.cookies()
    context.close()
    return {
        "chat": chat,
        "delete": chat + "/delete",  # the question Delete asks, as the page it is without JavaScript
        "edit": f"{chat}/m/{question}/edit",  # Edit's page without JavaScript
        "shared": shared,
        "sign-in": site.url + "/sign-in",
        "sign-up": site.url + "/sign-up",
        "admin": site.url + "/admin/",
        "cookies": cookies,
    }
