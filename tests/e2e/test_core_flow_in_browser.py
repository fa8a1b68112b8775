"""The core flow in a real browser: picking a model (the menu, the picker beside the box), sending, answering again
with another model, copying an answer; with the script and without it."""

import json

import pytest
from playwright.sync_api import expect

from tests.conftest import app_environment
from tests.e2e.test_chat_in_browser import REGENERATE, SHOTS
from tests.fakes.hf_server import ROUTER_MODELS, TOKEN
from tests.servers import GunicornApp


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, fake_hf):
    """A chat with two configured models, the second on the router, whose live catalogue the menu lists too."""
    folder = tmp_path_factory.mktemp("two-models")
    models = [
        {"name": "Gemma", "id": "google/gemma-7b-it", "url": fake_hf.task_url()},
        {"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake_hf.url + "/v1"},
    ]
    environment = app_environment(
        folder, MODELS=json.dumps(models), HF_API_TOKEN=TOKEN, CHAT_HUB_CACHE=str(folder / "hub")
    )
    with GunicornApp(environment) as app:
        yield app


@pytest.fixture
def chat(page, two_models, fake):
    """A new chat in this test's page."""
    fake.catalogue = ROUTER_MODELS
    page.goto(two_models.url + "/")
    with page.expect_navigation():  # the new chat loaded, its script running, before anything is typed
        page.click("text=New chat")
    yield page
    page.goto("about:blank")  # before the server stops: a page left open would try to reconnect its socket


def answer(page, fake, text, tokens):
    fake.reply(tokens=tokens)
    page.fill("#message-input", text)
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.done").last).to_contain_text("".join(tokens).strip()[:10])


def test_a_model_picked_shows_at_once_in_the_header_and_the_box_of_every_tab(chat, fake):
    other = chat.context.new_page()
    other.goto(chat.url)
    for tab in (chat, other):
        expect(tab.locator("#current-model")).to_have_text("Gemma")
        expect(tab.locator("#message-input")).to_have_attribute(
            "placeholder", "Message Gemma (Enter sends, Shift+Enter for a new line)"
        )
    chat.click("#model-menu summary")
    chat.click(".model-choice:has-text('Router chat')")
    for tab in (chat, other):  # no reload: this tab at once, the other within a second or two
        expect(tab.locator("#current-model")).to_have_text("Router chat")
        expect(tab.locator("#message-input")).to_have_attribute(
            "placeholder", "Message Router chat (Enter sends, Shift+Enter for a new line)"
        )
        expect(tab.locator("#model-input")).to_have_value("Router chat")
    chat.fill("#model-input", "Gemma")
    chat.keyboard.press("Tab")  # typed in the picker, then left: picked
    for tab in (chat, other):
        expect(tab.locator("#current-model")).to_have_text("Gemma")
    other.close()


def test_an_unknown_model_typed_in_the_picker_is_refused_and_the_message_stays_in_the_box(chat, fake):
    chat.fill("#message-input", "What is markdown?")
    chat.fill("#model-input", "markdown-model")
    chat.keyboard.press("Enter")
    expect(chat.locator("#notice")).to_contain_text(
        "There is no model named markdown-model to pick, so nothing was sent."
    )
    expect(chat.locator("#message-input")).to_have_value("What is markdown?")
    expect(chat.locator("#current-model")).to_have_text("Gemma")
    expect(chat.locator(".message")).to_have_count(0)
    assert fake.requests == []


@pytest.mark.parametrize("script", [True, False], ids=["with the script", "without it"])
def test_enter_in_the_picker_sends_what_is_typed_and_never_regenerates(browser, two_models, fake, script):
    context = browser.new_context(java_script_enabled=script)
    page = context.new_page()
    page.goto(two_models.url + "/")
    with page.expect_navigation():  # the new chat loaded, its script running, before anything is typed
        page.click("text=New chat")
    fake.reply(tokens=["First answer"])
    page.fill("#message-input", "First")
    page.click("#send-button")
    expect(page.locator(".message.assistant.done")).to_contain_text("First answer")
    fake.reply(tokens=["Second answer"])
    page.fill("#message-input", "Second")
    page.fill("#model-input", "Router chat")
    page.press("#model-input", "Enter")
    expect(page.locator(".message.user .body")).to_have_text(["First", "Second"])
    expect(page.locator(".message.assistant.done").last).to_contain_text("Second answer")
    expect(page.locator(".branch-position")).to_have_count(0)  # no second version of the first answer
    expect(page.locator(".message.assistant .speaker")).to_have_text(["Gemma", "Router chat"])
    context.close()


def test_regenerate_and_edit_answer_with_the_model_picked_now(chat, fake):
    answer(chat, fake, "Hello", ["From Gemma"])
    chat.click("#model-menu summary")
    chat.click(".model-choice:has-text('Router chat')")
    expect(chat.locator("#current-model")).to_have_text("Router chat")
    fake.reply(tokens=["From the router"])
    chat.click(REGENERATE)
    expect(chat.locator(".message.assistant.done")).to_contain_text("From the router")
    assert fake.requests[-1].path == "/v1/chat/completions"
    expect(chat.locator(".message.assistant .speaker")).to_have_text("Router chat")
    chat.get_by_label("Previous version").click()  # the first answer still says who wrote it
    expect(chat.locator(".message.assistant .speaker")).to_have_text("Gemma")
    chat.fill("#model-input", "Gemma")
    chat.locator(".message.user a.edit").click()
    chat.fill(".message.user form.edit textarea", "Hello again")
    fake.reply(tokens=["Gemma again"])
    chat.click("text=Send edited")
    expect(chat.locator(".message.assistant.done")).to_contain_text("Gemma again")
    expect(chat.locator(".message.assistant .speaker")).to_have_text("Gemma")
    assert fake.requests[-1].path == "/models/google/gemma-7b-it"


def test_copy_answer_copies_the_markdown_as_the_model_wrote_it(chat, fake):
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"])
    written = "Paris is the **capital**.\n\n```python\nprint('Paris')\n```\n\n| a | b |"
    answer(chat, fake, "Capital?", [written])
    chat.get_by_role("button", name="Copy answer").click()
    expect(chat.locator("button:has-text('Copied')")).to_be_visible()
    assert chat.evaluate("navigator.clipboard.readText()") == written


def test_the_menu_lists_what_each_model_is_and_is_searched_and_picked_from_the_keyboard(chat, fake):
    chat.locator("#model-menu summary").focus()
    chat.keyboard.press("Enter")  # opens it, in the search box
    expect(chat.locator("#model-search")).to_be_focused()
    headings = chat.locator(".model-group").all_inner_texts()
    assert headings[0] == "This chat's models" and headings[1:] == sorted(headings[1:], key=str.lower)
    current = chat.locator(".model-choice[aria-current=true]")
    expect(current).to_contain_text("Gemma (current)")
    gpt = chat.locator(".model-choice[value='openai/gpt-oss-20b']")
    expect(gpt).to_contain_text("by openai · context 131,072 tokens · $0.25 / $0.69 per M tokens in / out · cerebras")
    expect(gpt).to_contain_text("thinks · tools")
    expect(chat.locator(".model-choice[value='google/gemma-3-27b-it']")).to_contain_text("images")
    chat.keyboard.type("gpt-oss")
    expect(chat.locator(".model-choice")).to_have_count(1)  # searched on the server as one types
    chat.keyboard.press("ArrowDown")
    expect(gpt).to_be_focused()
    chat.keyboard.press("Enter")
    expect(chat.locator("#current-model")).to_have_text("openai/gpt-oss-20b")
    answer(chat, fake, "Hi", ["Hello from gpt"])
    assert fake.requests[-1].json["model"] == "openai/gpt-oss-20b"


def test_the_menu_works_without_javascript(browser, two_models, fake):
    fake.catalogue = ROUTER_MODELS
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(two_models.url + "/")
    with page.expect_navigation():  # the new chat loaded, its script running, before anything is typed
        page.click("text=New chat")
    page.click("#model-menu summary")
    page.fill("#model-search", "mistral")
    page.press("#model-search", "Enter")  # a page load, with the menu open on what was found
    expect(page.locator(".model-choice")).to_have_count(1)
    page.click(".model-choice")
    expect(page.locator("#current-model")).to_have_text("mistralai/Mistral-7B-Instruct-v0.3")
    expect(page.locator("#message-input")).to_have_attribute(
        "placeholder", "Message mistralai/Mistral-7B-Instruct-v0.3 (Enter sends, Shift+Enter for a new line)"
    )
    context.close()


def test_an_empty_chat_greets_and_an_example_prompt_sends_on_click(chat, fake):
    greeting = chat.locator("#greeting")
    expect(greeting.locator("h2")).to_have_text("Gemma")
    expect(greeting.locator(".introduction")).to_have_text("google/gemma-7b-it · by google")
    prompts = greeting.locator(".examples button")
    expect(prompts).to_have_count(4)
    first = prompts.first.inner_text()
    fake.reply(tokens=["Sunlight", " bends."])
    prompts.first.click()
    expect(chat.locator(".message.user .body")).to_have_text([first])
    expect(chat.locator(".message.assistant.done")).to_contain_text("Sunlight bends.")
    expect(greeting).to_be_hidden()
    expect(chat.locator("#message-input")).to_have_value("")


def test_the_model_menu_open_pictured_for_the_readme(browser, two_models, fake):
    """docs/chat-model-menu.png, made anew by every run (test-artifacts/) as the other pictures are."""
    fake.catalogue = ROUTER_MODELS
    context = browser.new_context(color_scheme="light", viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.goto(two_models.url + "/")
    answer(page, fake, "Which model should I pick for code?", ["Any of these; Router chat is on the router."])
    page.click("#model-menu summary")
    expect(page.locator(".model-group").first).to_be_visible()
    expect(page.locator(".model-choice[aria-current=true]")).to_contain_text("Gemma")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat-model-menu.png"))
    assert (SHOTS / "chat-model-menu.png").stat().st_size > 10_000
    context.close()


BOX_LOOK = "e => { const s = getComputedStyle(e); return [s.height, s.borderRadius, s.borderTopColor, s.fontSize]; }"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_picker_beside_the_box_looks_like_the_box_and_a_phone_keeps_one_line_with_the_top_menu(
    browser, two_models, scheme
):
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(two_models.url + "/")
    picker, box = page.locator("#model-input"), page.locator("#message-input")
    assert picker.evaluate(BOX_LOOK) == box.evaluate(BOX_LOOK)  # not the browser's bare little field
    assert abs(picker.bounding_box()["y"] - box.bounding_box()["y"]) < 2  # on the box's line
    summary = page.locator("#model-menu summary")
    assert summary.evaluate("s => getComputedStyle(s).borderTopStyle") == "solid"  # the menu is a button too
    page.evaluate("document.getElementById('current-model').textContent = 'google/gemma-7b-it'")
    page.evaluate("document.getElementById('conversation-title').textContent = 'Show me a function and a table'")
    assert summary.bounding_box()["height"] < 40  # a maker's long name stays on one line
    page.set_viewport_size({"width": 390, "height": 844})
    expect(picker).to_be_hidden()  # the top bar's menu picks on a phone
    tops = {round(page.locator(s).bounding_box()["y"]) for s in (".attach", "#message-input", "#send-button")}
    assert max(tops) - min(tops) < 4, tops  # one line: the picker does not push Send under the box
    context.close()
