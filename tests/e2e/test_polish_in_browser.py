"""The finish of the chat page: code blocks with their language and Copy in a bar, quotes set apart, keys, the
account menu."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_chat_in_browser import ask, clipboard


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

    page.mouse.move(1, 1)
    page.locator("#message-input").focus()
    page.keyboard.press("Shift+Tab")  # from the box back through the last answer's actions: the keyboard shows them
    while not page.evaluate("document.activeElement.closest('.message')"):
        page.keyboard.press("Shift+Tab")
    focused = page.locator(".message:has(:focus)")
    assert focused.locator(".message-actions").evaluate(opacity) == "1"

    phone_browser = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone_browser.add_cookies(page.context.cookies())  # the same person
    phone = phone_browser.new_page()
    phone.goto(page.url)
    assert phone.locator(".message.assistant").first.locator(".message-actions").evaluate(opacity) == "1"
    first_question, last_answer = phone.locator(".message.user").first, phone.locator(".message.assistant").last
    for message, names in [
        (first_question, ["Copy message", "Edit", "New chat from here"]),
        (last_answer, ["Copy answer", "Regenerate", "New chat from here"]),
    ]:
        assert message.locator(".message-actions").evaluate(opacity) == "1"  # always shown on a touch screen
        for name in names:
            button = message.get_by_label(name, exact=True)
            expect(button).to_be_visible()
            box = button.bounding_box()
            assert box["width"] >= 24 and box["height"] >= 24 and box["x"] + box["width"] <= 390, (name, box)
    expect(phone.locator(".message.assistant").first.get_by_role("button", name="Regenerate")).to_be_hidden()
    phone.context.close()


DRAWN = """b => { const use = b.querySelector("use");  // the width it paints, if the drawing it names is on the page
  return document.querySelector(use.getAttribute("href")) ? use.getBBox().width : 0; }"""


def test_message_actions_are_icons_named_for_screen_readers_and_edit_opens_in_place(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "2+2?", ["Four"])
    expect(page.locator(".message.assistant.done")).to_be_visible()
    for name in ["Copy message", "Edit", "New chat from here", "Copy answer", "Regenerate"]:
        button = page.get_by_label(name, exact=True).first
        button.hover()
        tooltip = button.evaluate("b => getComputedStyle(b, '::after').content")
        assert tooltip == f'"{name}"', (name, tooltip)  # its aria-label, shown as its tooltip by the CSS
        assert button.evaluate("b => b.querySelector('svg.icon') !== null && b.innerText.trim() === ''"), name
        assert button.evaluate(DRAWN) > 0, name  # its picture is found on the page and painted
    # Each icon's drawing is on the page once (a long chat repeats a short <use> of it, not the whole SVG).
    assert page.evaluate("document.querySelectorAll('.message-actions path, .message-actions rect').length") == 0
    question = page.locator(".message.user")
    text = question.locator(".body").bounding_box()
    question.get_by_label("Edit", exact=True).click()
    box = question.locator(".edit textarea")
    expect(box).to_be_focused()
    expect(box).to_have_value("2+2?")
    expect(question.locator(".body")).to_be_hidden()  # the box where the text was, above the other actions
    shown, copy = box.bounding_box(), question.get_by_label("Copy message", exact=True).bounding_box()
    assert shown["y"] < text["y"] + 60 and shown["y"] + shown["height"] < copy["y"], (text, shown, copy)
    question.get_by_label("Edit", exact=True).click()  # closed again: the text is back
    expect(question.locator(".body")).to_be_visible()
    expect(question.locator(".edit textarea")).to_have_count(0)
    for close in ("Escape", "Cancel"):  # Esc in the box, or its Cancel, closes it too and gives Edit the focus back
        question.get_by_label("Edit", exact=True).click()
        box.fill("changed, then not sent")
        box.press("Escape") if close == "Escape" else question.get_by_role("link", name="Cancel").click()
        expect(question.locator(".body")).to_have_text("2+2?")
        expect(question.get_by_label("Edit", exact=True)).to_be_focused()
    assert page.evaluate("document.querySelectorAll('form.edit').length") == 0  # the page's one is in its <template>


def test_delete_asks_once_in_a_dialog_that_esc_and_cancel_close_and_delete_confirms(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Plan a trip to Porto", ["Sure"])
    expect(page.locator(".message.assistant.done")).to_be_visible()
    chat = page.url
    dialog = page.locator("#delete-dialog")
    page.click("text=Rename, export or delete")
    delete = page.get_by_role("link", name="Delete this chat…")

    delete.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete this chat?")
    expect(dialog.get_by_role("link", name="Cancel")).to_be_focused()  # the safe answer first
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(chat)

    delete.click()
    dialog.get_by_role("link", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(chat)
    page.reload()
    expect(page.locator(".message")).to_have_count(2)  # kept

    page.click("text=Rename, export or delete")
    delete.click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page).not_to_have_url(chat)
    expect(page.locator(".conversation-list")).not_to_contain_text("Plan a trip to Porto")
    assert page.request.get(chat).status == 404


def test_a_share_link_made_shows_beside_its_form_and_copy_copies_it(page, gunicorn_on_fake, fake):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(gunicorn_on_fake.url + "/")
    page.bring_to_front()
    ask(page, fake, "Best owl?", ["The barn owl"])
    expect(page.locator(".message.assistant.done")).to_be_visible()
    page.click("text=Rename, export or delete")
    page.click("text=Make a share link")
    field = page.locator("#made-link")
    expect(field).to_be_focused()  # where the person is looking, ready to copy
    link = field.input_value()
    assert link.startswith(gunicorn_on_fake.url + "/s/")
    made, shown = page.get_by_role("button", name="Make a share link").bounding_box(), field.bounding_box()
    assert 0 < shown["y"] - made["y"] < 120, (made, shown)  # just under the button that made it
    copy = page.locator(".made-link button")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert clipboard(page) == link
    expect(copy).to_have_text("Copy", timeout=3000)  # then ready again


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


FIELD_LOOK = "e => { const s = getComputedStyle(e); return [s.borderRadius, s.fontSize, s.backgroundColor]; }"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_settings_boxes_and_lists_look_alike_and_line_up_beside_their_labels(browser, gunicorn_on_fake, scheme):
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(gunicorn_on_fake.url + "/")
    page.click("#settings-panel summary")
    number = page.locator("#temperature")
    for field in ("#reasoning-effort", "#system-prompt", "#share-expires"):  # not the browser's own small grey list
        assert page.locator(field).evaluate(FIELD_LOOK) == number.evaluate(FIELD_LOOK), field
    label = page.locator("label[for=temperature]").bounding_box()
    assert number.bounding_box()["x"] - (label["x"] + label["width"]) < 300  # beside it, not at the far edge
    context.close()
