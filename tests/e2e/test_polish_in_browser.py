"""The finish of the chat page: code blocks with their language and Copy in a bar, quotes set apart, keys, the
account menu."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_chat_in_browser import ask


def test_a_code_block_shows_its_language_and_copy_in_its_corner_and_a_quote_is_set_apart(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Code and a quote", ["> Simple is better.\n\n```rust\nfn main() {}\n```\n"])
    answer = page.locator(".message.assistant.done .body")
    head = answer.locator(".code-head")
    expect(head).to_contain_text("rust")
    expect(head.locator("button", has_text="Copy code")).to_be_visible()
    bar, block = head.bounding_box(), answer.locator("pre").bounding_box()
    assert abs(bar["y"] + bar["height"] - block["y"]) < 2 and abs(bar["x"] - block["x"]) < 2  # on the block's top
    quote = answer.locator("blockquote")
    assert quote.evaluate("q => parseFloat(getComputedStyle(q).borderLeftWidth)") >= 3


def test_keys_a_skip_link_slash_escape_and_a_new_chat_listed_under_the_question_mark(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    first_url = page.url
    skip = page.locator(".skip-link")
    assert skip.evaluate("a => a === document.querySelector('a[href], button, input, textarea, summary')")  # first
    skip.focus()
    assert skip.bounding_box()["y"] >= 0  # shown when it has the focus
    page.keyboard.press("Enter")
    page.keyboard.type("hello")
    expect(page.locator("#message-input")).to_have_value("hello")

    page.click("#settings-panel summary")
    expect(page.locator("#settings-panel")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("#settings-panel")).not_to_have_attribute("open", "")

    page.locator(".shortcuts summary").click()
    for shortcut in ["/", "Ctrl+Shift+O", "Esc"]:
        expect(page.locator(".shortcuts dl")).to_contain_text(shortcut)
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    expect(page.locator("#message-input")).to_be_focused()
    with page.expect_navigation():
        page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(first_url)  # this chat has no message yet: New chat goes back to it
    ask(page, fake, "A first message", ["An answer"])
    expect(page.locator(".message.assistant.done")).to_have_count(1)
    page.keyboard.press("Control+Shift+O")
    expect(page).not_to_have_url(first_url)
    expect(page.locator(".message")).to_have_count(0)


def test_message_actions_show_on_hover_and_focus_and_always_on_a_phone(browser, page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "First", ["One"])
    expect(page.locator(".message.assistant.done")).to_have_count(1)
    ask(page, fake, "Second", ["Two"])
    expect(page.locator(".message.assistant.done")).to_have_count(2)
    actions = page.locator(".message.assistant").first.locator(".message-actions")
    opacity = "a => getComputedStyle(a).opacity"
    page.mouse.move(1, 1)
    assert actions.evaluate(opacity) == "0"
    page.locator(".message.assistant").first.hover()
    assert actions.evaluate(opacity) == "1"
    page.mouse.move(1, 1)
    actions.locator("button").first.focus()
    assert actions.evaluate(opacity) == "1"
    assert page.locator(".message.assistant").last.locator(".message-actions").evaluate(opacity) == "1"

    phone_browser = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone_browser.add_cookies(page.context.cookies())  # the same person
    phone = phone_browser.new_page()
    phone.goto(page.url)
    assert phone.locator(".message.assistant").first.locator(".message-actions").evaluate(opacity) == "1"
    phone.context.close()


@pytest.mark.parametrize("script", [True, False], ids=["with the script", "without it"])
def test_the_account_menu_names_the_account_and_holds_admin_import_and_sign_out(browser, pages, script):
    context = browser.new_context(java_script_enabled=script, viewport={"width": 1200, "height": 700})
    context.add_cookies(pages["cookies"])
    page = context.new_page()
    page.goto(pages["chat"])
    menu, summary = page.locator("#account-menu"), page.locator("#account-menu summary")
    expect(summary).to_contain_text("ada")
    inside = [
        page.get_by_role("link", name="Admin"),
        page.get_by_label("Import a JSON export"),
        page.get_by_role("button", name="Sign out", exact=True),  # not pressed: other tests share ada's session
        page.get_by_role("button", name="Sign out everywhere"),
    ]
    for item in inside:
        expect(item).to_be_hidden()
    summary.click()
    for item in inside:
        expect(item).to_be_visible()
    panel = page.locator(".account-panel").bounding_box()
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= summary.bounding_box()["y"]  # above it, on the screen
    if script:
        page.keyboard.press("Escape")
        expect(menu).not_to_have_attribute("open", "")
        expect(summary).to_be_focused()
        summary.click()
        page.locator("#message-input").click()  # a click elsewhere closes it too
        expect(menu).not_to_have_attribute("open", "")
    else:
        summary.click()
        expect(menu).not_to_have_attribute("open", "")
    context.close()


@pytest.mark.parametrize("script", [True, False], ids=["with the script", "without it"])
def test_new_chat_pressed_twice_makes_one_empty_chat(browser, gunicorn_on_fake, fake, script):
    context = browser.new_context(java_script_enabled=script)
    page = context.new_page()
    page.goto(gunicorn_on_fake.url + "/")
    first, listed = page.url, page.locator(".conversation-list li")
    for _ in range(2):
        with page.expect_navigation():
            page.click(".sidebar .new-chat")
        expect(page).to_have_url(first)  # the chat with no message yet, again
        expect(listed).to_have_count(1)
    fake.reply(tokens=["Hello"])
    page.fill("#message-input", "Hi")
    page.click("#send-button")
    expect(page.locator(".message.assistant.done")).to_contain_text("Hello")
    for _ in range(2):
        with page.expect_navigation():
            page.click(".sidebar .new-chat")
        expect(page).not_to_have_url(first)
        expect(listed).to_have_count(2)  # one new chat, however many presses
    context.close()
