"""The finish of the chat page: code blocks with their language and Copy in a bar, quotes set apart."""

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
