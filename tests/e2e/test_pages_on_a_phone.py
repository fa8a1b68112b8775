"""Every page on a phone (Chromium's phone emulation at 390 and 360 wide), with every panel open: nothing is
wider than the screen except inside a box that scrolls itself, the top bar is one line, the composer small, and the
chat list opens as a drawer under the bar."""

import pytest
from playwright.sync_api import expect

PHONES = {"390x844": {"width": 390, "height": 844}, "360x740": {"width": 360, "height": 740}}
# Elements that stand past the screen's edge, except those inside a box that scrolls (or clips) itself.
PAST_THE_EDGE = """width => {
  const past = [], range = document.createRange();
  const clipped = node => { for (let a = node.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return true; } return false; };
  const check = (node, box, name) => {
    if (box.width && (box.right > width + 0.5 || box.left < -0.5) && !clipped(node))
      past.push(name + " " + Math.round(box.left) + ".." + Math.round(box.right));
  };
  for (const e of document.querySelectorAll("body *"))
    check(e, e.getBoundingClientRect(), e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className);
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (texts.nextNode()) {
    range.selectNodeContents(texts.currentNode);
    check(texts.currentNode, range.getBoundingClientRect(),
          "text " + JSON.stringify(texts.currentNode.data.slice(0, 30)));
  }
  return past;
}"""


def phone(browser, size, cookies=()):
    context = browser.new_context(viewport=size, is_mobile=True, has_touch=True, device_scale_factor=2)
    context.add_cookies(list(cookies))
    return context.new_page()


def open_every_panel(page):
    """Every <details> open, the first question's Edit form in place and the phone's chat list shown."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.evaluate("document.querySelector('.message a.edit')?.click()")
    page.evaluate("document.querySelectorAll('#sidebar-switch').forEach(s => s.checked = true)")


@pytest.mark.parametrize("size", PHONES.values(), ids=PHONES.keys())
@pytest.mark.parametrize("name", ["chat", "delete", "edit", "shared", "sign-in", "sign-up", "admin"])
def test_no_page_is_wider_than_a_phone_with_every_panel_open(browser, pages, name, size):
    signed_in = name not in ("sign-in", "sign-up")
    page = phone(browser, size, pages["cookies"] if signed_in else ())
    page.goto(pages[name])
    open_every_panel(page)
    page.wait_for_timeout(100)
    shown = (page.evaluate("innerWidth"), page.evaluate(PAST_THE_EDGE, size["width"]))
    assert shown == (size["width"], []), "\n".join(map(str, shown[1]))  # no zooming out to fit something wider
    page.context.close()


@pytest.mark.parametrize("size", PHONES.values(), ids=PHONES.keys())
def test_on_a_phone_the_top_bar_is_one_line_and_the_empty_composer_small(browser, pages, size):
    page = phone(browser, size, pages["cookies"])
    page.goto(pages["chat"])
    long_title = "A title far too long for a phone's top bar, which cuts it with an ellipsis " * 2
    page.evaluate("title => document.getElementById('conversation-title').textContent = title", long_title)
    parts = ".sidebar-switch-label", "#conversation-title", "#current-model", ".top-bar .new-chat"
    bar, *boxes = (page.locator(selector).bounding_box() for selector in (".top-bar", *parts))
    assert bar["height"] < 60, bar
    middles = [box["y"] + box["height"] / 2 for box in boxes]
    assert max(middles) - min(middles) < 4, boxes  # one line, in this order, all on the screen
    assert [box["x"] for box in boxes] == sorted(box["x"] for box in boxes)
    assert boxes[-1]["x"] + boxes[-1]["width"] <= size["width"]
    title = page.locator("#conversation-title")
    assert title.evaluate("h => h.scrollWidth > h.clientWidth && getComputedStyle(h).textOverflow") == "ellipsis"
    assert page.locator("#current-model").inner_text() == "gemma-7b-it"  # short: without "google/"
    page.evaluate("scrollTo(0, document.body.scrollHeight)")
    assert page.locator(".top-bar").bounding_box()["y"] == 0  # the bar stays at the top
    composer = page.locator("#composer")
    empty = composer.bounding_box()["height"]
    assert empty <= 0.15 * size["height"], empty
    page.fill("#message-input", "\n".join(f"line {n}" for n in range(6)))
    assert composer.bounding_box()["height"] > empty + 40  # it grows with the text
    page.context.close()


def test_on_a_phone_the_chat_list_is_a_drawer_that_chats_opens_and_closes(browser, pages):
    page = phone(browser, PHONES["390x844"], pages["cookies"])
    page.goto(pages["chat"])
    chats = page.locator(".conversation-list")
    expect(chats).to_be_hidden()
    page.click(".sidebar-switch-label")
    expect(chats).to_contain_text("Show me wide things")
    drawer, bar = page.locator(".sidebar").bounding_box(), page.locator(".top-bar").bounding_box()
    assert drawer["y"] == bar["y"] + bar["height"] and drawer["width"] < 390  # under the bar, the chat beside it
    expect(page.locator(".sidebar .new-chat")).to_be_hidden()  # the bar has New chat
    page.click(".sidebar-switch-label")
    expect(chats).to_be_hidden()
    page.click(".sidebar-switch-label")
    expect(chats).to_be_visible()
    page.mouse.click(380, 400)  # on the chat beside the list: it closes (with the script)
    expect(chats).to_be_hidden()
    page.context.close()
