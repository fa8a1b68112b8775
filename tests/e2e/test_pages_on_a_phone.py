"""Every page on a phone (Chromium's phone emulation at 390 and 360 wide), with every panel open: nothing is
wider than the screen except inside a box that scrolls itself, the top bar is one line, the composer small."""

import pytest
from playwright.sync_api import expect

from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import PASSWORD
from tests.servers import GunicornApp

PHONES = {"390x844": {"width": 390, "height": 844}, "360x740": {"width": 360, "height": 740}}
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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def pages(site, browser, fake_hf):
    """The address of each page: the chat, a share of it, sign-in, sign-up, admin; and ada's cookies."""
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
    ada.click("text=Rename, export or delete")
    ada.click("text=Make a share link")
    shared = ada.locator("#notice").inner_text().rsplit(" ", 1)[1]
    cookies = context.cookies()
    context.close()
    return {
        "chat": chat,
        "shared": shared,
        "sign-in": site.url + "/sign-in",
        "sign-up": site.url + "/sign-up",
        "admin": site.url + "/admin/",
        "cookies": cookies,
    }


def phone(browser, size, cookies=()):
    context = browser.new_context(viewport=size, is_mobile=True, has_touch=True, device_scale_factor=2)
    context.add_cookies(list(cookies))
    return context.new_page()


def open_every_panel(page):
    """Every <details> open and the phone's chat list shown."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    switch = page.locator("#sidebar-switch")
    if switch.count():
        switch.check(force=True)


@pytest.mark.parametrize("size", PHONES.values(), ids=PHONES.keys())
@pytest.mark.parametrize("name", ["chat", "shared", "sign-in", "sign-up", "admin"])
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
    bar, menu, new = (page.locator(selector).bounding_box() for selector in (".sidebar", ".sidebar-switch-label", ".new-chat"))
    assert bar["height"] < 60 and abs(menu["y"] - new["y"]) < 4, (bar, menu, new)  # one line
    page.evaluate("scrollTo(0, document.body.scrollHeight)")
    assert page.locator(".sidebar").bounding_box()["y"] == 0  # the bar stays at the top
    composer = page.locator("#composer")
    empty = composer.bounding_box()["height"]
    assert empty <= 0.15 * size["height"], empty
    page.fill("#message-input", "\n".join(f"line {n}" for n in range(6)))
    assert composer.bounding_box()["height"] > empty + 40  # it grows with the text
    page.context.close()
