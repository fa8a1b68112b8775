"""The chat page in a real browser: send, stream, busy state, markdown, nothing from the model runs."""

import json

from playwright.sync_api import expect

from tests.conftest import app_environment
from tests.e2e.conftest import tool_chat_environment
from tests.fakes.hf_server import ROUTER_MODELS, TOKEN
from tests.samples import png
from tests.servers import ROOT, GunicornApp

REGENERATE = ".message.assistant:last-of-type button.regenerate"  # it answers the last question again


def ask(page, fake, text, tokens, **reply):
    """Queue the fake's answer, type the message and press Enter."""
    fake.reply(tokens=tokens, **reply)
    page.fill("#message-input", text)
    page.keyboard.press("Enter")


HOSTILE = [
    "Here is code:\n\n```python\nprint('hi')\n```\n\n",
    '<img src=x onerror="window.hacked=1"> <script>window.hacked=2</script>',
    " [click](javascript:window.hacked=3)",
]


def test_a_message_streams_in_and_ends_as_safe_markdown(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    fake.reply(tokens=HOSTILE, delay=0.3, first_delay=1.0)
    page.fill("#message-input", "Show me code")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.streaming .thinking")).to_be_visible()  # before the first token

    expect(page.locator(".message.user .body")).to_have_text("Show me code")
    expect(page.locator("#message-input")).to_have_value("")
    streaming = page.locator(".message.assistant.streaming .body")
    expect(streaming).to_contain_text("Here is code:")
    expect(page.locator("#send-button")).to_be_disabled()
    expect(page.locator("#conversation-title")).to_have_text("Show me code")

    answer = page.locator(".message.assistant.done .body")
    expect(answer.locator("pre code .nb")).to_have_text("print")
    expect(answer).to_contain_text("<script>window.hacked=2</script>")
    expect(page.locator("#send-button")).to_be_enabled()
    expect(page.locator(".message.assistant.done .stats")).to_contain_text("tokens/s")
    assert page.evaluate("window.hacked") is None
    assert page.locator(".markdown img, .markdown script, a[href^='javascript']").count() == 0

    page.reload()
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator(".message.assistant.done pre")).to_be_visible()


CODE_LINES = [f"x{i} = {i}\n" for i in range(90)]  # longer than FENCE_LINES: shown in pieces while it streams
MARKDOWN = ["Steps:\n\n", "- one\n", "- **two**\n\n", "| a | b |\n", "|---|---|\n", "| 1 | 2 |\n\n", "```python\n"]
MARKDOWN += [*CODE_LINES, "```\n\n", "Done."]


def test_markdown_renders_while_it_streams_here_and_in_a_tab_that_follows(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Show me everything", MARKDOWN, delay=0.1)
    streaming = page.locator(".message.assistant.streaming .body")
    expect(streaming.locator("li")).to_have_count(2)
    expect(streaming.locator("li strong")).to_have_text("two")
    expect(streaming.locator("table td").first).to_have_text("1")
    expect(streaming.locator("pre code.language-python").first).to_contain_text("x3 = 3")  # the fence is still open
    assert "```" not in streaming.inner_text() and "**" not in streaming.inner_text()

    follower = page.context.new_page()  # a second tab, opened mid-answer, follows it
    follower.goto(page.url)
    followed = follower.locator(".message.assistant.streaming .body")
    expect(followed.locator("li")).to_have_count(2)
    expect(followed.locator("table")).to_have_count(1)
    expect(followed.locator("pre code").last).to_contain_text("x45 = 45")
    expect(streaming.locator("pre.continues")).to_have_count(1)  # the long fence, committed in a piece

    for tab in (page, follower):
        done = tab.locator(".message.assistant.done .body.markdown")
        expect(done).to_contain_text("Done.", timeout=15_000)  # half the answer (4.5 s at 0.1 s a token) is to come
        expect(done.locator("pre")).to_have_count(1)  # the whole answer's rendering: one code block
        expect(done.locator("pre code")).to_contain_text("x0 = 0\nx1 = 1")
        assert done.locator("li").count() == 2 and done.locator("table").count() == 1
        assert tab.locator(".live-tail, .body.live").count() == 0
    follower.close()


MATHS = [
    "Inline $e^{i\\pi}+1=0$ and \\(x^2\\) and $\\text{<b>not bold</b>}$.\n\n",
    "$$\n\\int_0^1 x\\,dx\n$$\n\n",
    "\\[\n\\frac{a}{b}\n\\]\n\n",
    *["and so on " for _ in range(20)],
]


def test_maths_is_drawn_while_it_streams_when_done_and_on_the_share_page(page, browser, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Some maths", MATHS, delay=0.15)
    streaming = page.locator(".message.assistant.streaming .body")
    expect(streaming.locator("math")).to_have_count(4)  # $, \(, $$ and \[, drawn before the answer ends
    expect(streaming.locator("code.math-source")).to_have_text("$\\text{<b>not bold</b>}$")
    done = page.locator(".message.assistant.done .body")
    expect(done.locator("math")).to_have_count(4)
    for formula in done.locator("math").all():
        assert formula.bounding_box()["width"] > 5  # the browser draws MathML
    assert done.locator("b, script").count() == 0 and done.inner_text().count("$") == 2  # those of the source shown

    page.click("text=Rename, export or delete")
    page.click("text=Make a share link")
    link = page.locator("#made-link").input_value()
    other = browser.new_context().new_page()
    other.goto(link)
    expect(other.locator(".message.assistant .body math")).to_have_count(4)
    other.context.close()


def test_shift_enter_a_loading_countdown_and_escape_to_stop(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    page.fill("#message-input", "line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(page.locator("#message-input")).to_have_value("line one\nline two")
    fake.reply(status=503, body={"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 20.0})
    page.click("#send-button")
    expect(page.locator(".message.assistant.streaming .waiting")).to_contain_text("Model is loading, about")
    page.keyboard.press("Escape")
    expect(page.locator(".message.assistant.stopped")).to_contain_text("Stopped")
    expect(page.locator(".message.user .body")).to_have_text("line one\nline two")
    expect(page.locator("#send-button")).to_be_enabled()


def test_a_failure_shows_in_the_chat_with_what_to_do(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    fake.reply(status=403, body={"error": "Access to model google/gemma-7b-it is restricted"})
    page.fill("#message-input", "hello")
    page.keyboard.press("Enter")
    failure = page.locator(".message.assistant.error [role=alert]")
    expect(failure).to_contain_text("no access to google/gemma-7b-it")
    expect(failure.locator(".error-hint")).to_contain_text("https://huggingface.co/google/gemma-7b-it")


def test_new_chat_switch_rename_search_and_delete(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Plan a trip to Lisbon", ["Sure"])
    expect(page.locator(".message.assistant.done")).to_be_visible()
    first_url = page.url

    page.click("text=New chat")
    expect(page).not_to_have_url(first_url)
    expect(page.locator(".message")).to_have_count(0)
    page.click("text=Plan a trip to Lisbon")
    expect(page).to_have_url(first_url)
    expect(page.locator(".message")).to_have_count(2)

    page.click("text=Rename, export or delete")
    page.fill("#title-input", "Lisbon")
    page.click("button:has-text('Rename')")
    expect(page.locator("#conversation-title")).to_have_text("Lisbon")

    page.fill("#search-input", "lisbon")
    page.keyboard.press("Enter")
    expect(page.locator(".search-summary")).to_contain_text("1 found")
    expect(page.locator(".conversation-list li")).to_have_count(1)

    page.go_back()
    page.go_back()
    expect(page.locator("#conversation-title")).to_have_text("Lisbon")

    page.click("text=Rename, export or delete")
    page.get_by_role("link", name="Delete this chat…").click()
    page.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".conversation-list")).not_to_contain_text("Lisbon")


def test_regenerate_and_edit_keep_versions_to_switch_between(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "2+2?", ["Four"])
    expect(page.locator(".message.assistant.done")).to_contain_text("Four")

    fake.reply(tokens=["It is four."])
    page.click(REGENERATE)
    expect(page.locator(".message.assistant.done")).to_contain_text("It is four.")
    expect(page.locator(".message")).to_have_count(2)
    answer = page.locator(".message.assistant")
    expect(answer.locator(".branch-position")).to_have_text("2 / 2")
    answer.get_by_label("Previous version").click()
    expect(answer.locator(".body")).to_have_text("Four")
    expect(answer.locator(".branch-position")).to_have_text("1 / 2")
    expect(answer.get_by_label("Previous version")).to_be_disabled()
    answer.get_by_label("Next version").click()
    expect(answer.locator(".body")).to_have_text("It is four.")

    fake.reply(tokens=["Six"])
    page.click(".message.user a.edit")
    page.fill(".message.user .edit textarea", "3+3?")
    page.click(".message.user .edit button")
    expect(page.locator(".message.assistant.done")).to_contain_text("Six")
    expect(page.locator(".message.user .body")).to_have_text("3+3?")
    expect(page.locator(".message")).to_have_count(2)
    question = page.locator(".message.user")
    expect(question.locator(".branch-position")).to_have_text("2 / 2")
    question.get_by_label("Previous version").click()
    expect(question.locator(".body")).to_have_text("2+2?")
    expect(page.locator(".message.assistant .body")).to_have_text("It is four.")  # that branch's continuation
    expect(page.locator(".message.assistant .branch-position")).to_have_text("2 / 2")

    ask(page, fake, "And 4+4?", ["Eight"])  # on the branch shown
    expect(page.locator(".message.assistant.done").last).to_contain_text("Eight")
    page.reload()
    expect(page.locator(".message .body")).to_have_text(["2+2?", "It is four.", "And 4+4?", "Eight"])
    assert "It is four." in fake.requests[-1].json["inputs"] and "3+3" not in fake.requests[-1].json["inputs"]

    page.locator(".message.assistant").first.get_by_role("button", name="New chat from here").click()
    expect(page.locator(".message .body")).to_have_text(["2+2?", "It is four."])
    expect(page.locator(".branch-position")).to_have_count(0)
    expect(page.locator(".conversation-list li")).to_have_count(2)


def two_versions_then_a_tale(page, url, fake, words):
    """A chat whose first answer has two versions ("One", "Two"), then a tale of `words` words streaming slowly
    (it waits for each step; the tests check what they see)."""
    page.goto(url + "/")
    ask(page, fake, "Count", ["One"])
    page.locator(".message.assistant.done", has_text="One").wait_for()
    fake.reply(tokens=["Two"])
    page.click(REGENERATE)
    page.locator(".message.assistant .branch-position", has_text="2 / 2").wait_for()
    ask(page, fake, "Tell a tale", [f" word{i}" for i in range(words)], delay=0.1)
    page.locator(".message.assistant.streaming .body", has_text="word3").wait_for()


def test_switching_in_one_tab_while_another_streams(page, gunicorn_on_fake, fake):
    two_versions_then_a_tale(page, gunicorn_on_fake.url, fake, words=40)
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#stop-button")).to_be_visible()  # one answer at a time, on any branch
    other.locator(".message.assistant").first.get_by_label("Previous version").click()
    expect(other.locator(".message .body")).to_have_text(["Count", "One"])

    expect(page.locator(".message.assistant.done").last).to_contain_text("word39")  # not broken by the switch
    expect(other.locator("#send-button")).to_be_enabled()  # the other tab heard that it ended
    expect(other.locator(".message .body")).to_have_text(["Count", "One"])
    other.reload()
    expect(other.locator(".message .body")).to_have_text(["Count", "One"])
    other.close()


def test_switching_in_the_tab_that_is_writing_the_answer(page, gunicorn_on_fake, fake):
    two_versions_then_a_tale(page, gunicorn_on_fake.url, fake, words=30)
    page.locator(".message.assistant").first.get_by_label("Previous version").click()
    expect(page.locator(".message .body")).to_have_text(["Count", "One"])  # no error from the answer's fragments
    expect(page.locator("#send-button")).to_be_enabled(timeout=15_000)  # it ended, written on its own branch
    page.locator(".message.assistant").first.get_by_label("Next version").click()
    expect(page.locator(".message .body").last).to_contain_text("word29")


def test_switching_back_to_a_streaming_answer_shows_it_live_in_every_tab(page, gunicorn_on_fake, fake):
    two_versions_then_a_tale(page, gunicorn_on_fake.url, fake, words=100)
    other = page.context.new_page()  # it follows the answer that the first tab writes
    other.goto(page.url)
    for tab in (page, other):
        tab.locator(".message.assistant").first.get_by_label("Previous version").click()
        expect(tab.locator(".message .body")).to_have_text(["Count", "One"])
        tab.locator(".message.assistant").first.get_by_label("Next version").click()
        expect(tab.locator(".message.assistant.streaming")).to_have_count(1)
    tale = " ".join(f"word{i}" for i in range(100))
    for tab in (page, other):
        streaming = tab.locator(".message.assistant.streaming .body")
        expect(streaming).to_contain_text("word50", timeout=8_000)  # live, not only when it ends
        assert tale.startswith(streaming.inner_text().strip())  # nothing lost or said twice
    for tab in (page, other):
        expect(tab.locator(".message.assistant.done .body").last).to_have_text(tale, timeout=15_000)
    other.close()


def test_export_and_import_round_trip(page, gunicorn_on_fake, fake, tmp_path):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Remember this", ["Kept **safe**"])
    expect(page.locator(".message.assistant.done")).to_contain_text("Kept safe")

    page.click("text=Rename, export or delete")
    with page.expect_download() as download:
        page.click("a:has-text('JSON')")
    saved = tmp_path / "export.json"
    download.value.save_as(saved)

    page.click("#account-menu summary")  # import is in the account menu
    page.set_input_files("#import-file", str(saved))
    page.click("button:has-text('Import')")
    expect(page.locator(".conversation-list li")).to_have_count(2)
    expect(page.locator(".message.assistant.done strong")).to_have_text("safe")
    expect(page.locator(".message.user .body")).to_have_text("Remember this")


def clipboard(page):
    """The clipboard's text; never waits more than 3 s (readText can hang on an unfocused page)."""
    return page.evaluate(
        "Promise.race([navigator.clipboard.readText(),"
        " new Promise((_, fail) => setTimeout(() => fail(new Error('clipboard did not answer')), 3000))])"
    )


def test_copy_buttons_and_settings(page, browser, gunicorn_on_fake, fake):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(gunicorn_on_fake.url + "/")
    page.bring_to_front()
    page.click("#settings-panel summary")
    page.fill("#system-prompt", "Answer in code.")
    page.fill("#temperature", "0.3")
    page.click("text=Save settings")
    expect(page.locator(".chat-header .model")).to_contain_text("temperature 0.3")

    ask(page, fake, "Code please", ["Here:\n\n```python\nx = 1\n```"])
    expect(page.locator(".message.assistant.done")).to_be_visible()
    assert fake.requests[-1].json["parameters"]["temperature"] == 0.3
    assert fake.requests[-1].json["inputs"].startswith("<bos><start_of_turn>user\nAnswer in code.\n\nCode please")

    page.click("button:has-text('Copy code')")
    expect(page.locator("button:has-text('Copied')")).to_be_visible()
    assert clipboard(page) == "x = 1\n"
    page.get_by_role("button", name="Copy answer").click()
    expect(page.locator("button[aria-label='Copy answer']")).to_have_text("Copied")
    assert clipboard(page) == "Here:\n\n```python\nx = 1\n```"  # the markdown, not the buttons' labels


def test_the_chat_works_without_javascript(browser, gunicorn_on_fake, fake):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(gunicorn_on_fake.url + "/")
    fake.reply(tokens=["Works", " without", " **JS**"])
    page.fill("#message-input", "No scripts here")
    page.click("#send-button")
    expect(page.locator(".message.assistant.done")).to_contain_text("Works without JS")
    expect(page.locator(".message.user .body")).to_have_text("No scripts here")
    fake.reply(tokens=["Again"])
    page.click(REGENERATE)
    expect(page.locator(".message.assistant.done")).to_contain_text("Again")
    page.get_by_label("Previous version").click()
    expect(page.locator(".message.assistant .body")).to_have_text("Works without JS")
    expect(page.locator(".branch-position")).to_have_text("1 / 2")
    page.get_by_role("button", name="New chat from here").first.click()
    expect(page.locator(".message .body")).to_have_text(["No scripts here"])
    page.set_input_files("#file-input", files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Milk"}])
    fake.reply(tokens=["Buy milk."])
    page.fill("#message-input", "What do my notes say?")
    page.click("#send-button")  # the form, multipart, carries the file
    expect(page.locator(".message.assistant.done").last).to_contain_text("Buy milk.")
    expect(page.locator(".message.user .attachments a")).to_have_text(["notes.md"])
    assert "Attached file: notes.md\n```\n# Milk\n```" in fake.requests[-1].json["inputs"]
    context.close()


def test_without_javascript_a_refused_message_keeps_its_file_in_a_box_to_untick(browser, tmp_path, fake):
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, MESSAGES_PER_MINUTE="1")
    with GunicornApp(environment) as app:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(app.url + "/")
        fake.reply(tokens=["Hello."])
        page.fill("#message-input", "Hi")
        page.click("#send-button")
        expect(page.locator(".message.assistant.done")).to_contain_text("Hello.")
        page.set_input_files("#file-input", files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": b"x"}])
        page.fill("#message-input", "What do my notes say?")
        page.click("#send-button")  # past the limit of one a minute
        expect(page.locator("#notice")).to_contain_text("asked for 1 answer this minute")
        expect(page.get_by_role("checkbox", name="notes.md")).to_be_checked()  # sent with the next try unless unticked
        expect(page.locator("#attachments .remove-attachment")).to_be_hidden()  # it needs the script
        context.close()


SHOTS = ROOT / "test-artifacts"


def test_screenshots_light_dark_and_phone(browser, gunicorn_on_fake, fake):
    """The pictures in the README, made anew by every run (test-artifacts/)."""
    SHOTS.mkdir(exist_ok=True)
    for name, options in {
        "light": {"color_scheme": "light", "viewport": {"width": 1200, "height": 760}},
        "dark": {"color_scheme": "dark", "viewport": {"width": 1200, "height": 760}},
        "phone": {"color_scheme": "light", "viewport": {"width": 390, "height": 760}, "is_mobile": True},
    }.items():
        context = browser.new_context(**options)
        page = context.new_page()
        page.goto(gunicorn_on_fake.url + "/")
        answer = [
            "Here is **Python**:\n\n```python\ndef greet(name):\n    return f'Hello, {name}!'\n```\n\n"
            "| Language | Typed |\n|---|---|\n| Python | gradually |\n\n"
            "Its greeting counts $n$ letters; the mean of $x_i$ is\n\n$$\\bar{x} = \\frac{1}{n}\\sum_{i=1}^{n} x_i$$"
        ]
        thought = ["A function and a table: a short greeting in Python, then how it is typed."]
        page.set_input_files("#file-input", files=[{"name": "languages.csv", "mimeType": "text/csv", "buffer": b"a\n"}])
        expect(page.locator("#attachments .attachment-name")).to_have_text("languages.csv")  # uploaded
        fake.reply(tokens=answer, reasoning=thought)
        page.fill("#message-input", "Show me a function and a table")
        page.keyboard.press("Enter")
        expect(page.locator(".message.assistant.done")).to_be_visible()
        fake.reply(tokens=answer, reasoning=thought)
        page.click(REGENERATE)  # a second version: "‹ 2 / 2 ›"
        expect(page.locator(".message.assistant.done .branch-position")).to_have_text("2 / 2")
        if name == "phone":
            expect(page.locator(".conversation-list")).to_be_hidden()
            page.click(".sidebar-switch-label")
            expect(page.locator(".conversation-list")).to_be_visible()
            page.click(".sidebar-switch-label")
        page.screenshot(path=str(SHOTS / f"chat-{name}.png"))
        assert (SHOTS / f"chat-{name}.png").stat().st_size > 10_000
        context.close()


def test_continue_an_answer_cut_at_the_length_limit(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Count", ["One,", " two,"], finish_reason="length")
    expect(page.locator(".message.assistant.done")).to_contain_text("Stopped at the length limit")
    fake.reply(tokens=[" three."])
    page.click("#continue-button")
    expect(page.locator(".message.assistant.done .body")).to_have_text("One, two, three.")
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator("#continue-button")).to_have_count(0)


def test_stop_keeps_the_partial_answer_and_the_view_follows_unless_scrolled_up(page, gunicorn_on_fake, fake):
    page.set_viewport_size({"width": 1000, "height": 500})
    page.goto(gunicorn_on_fake.url + "/")
    expect(page.locator("#messages")).to_have_attribute("aria-live", "polite")
    ask(page, fake, "Talk a lot", [f"line {i}\n\n" for i in range(200)], delay=0.03)
    expect(page.locator(".message.assistant.streaming .body")).to_contain_text("line 40")
    bottom = page.evaluate("document.scrollingElement.scrollHeight - innerHeight - scrollY")
    assert bottom < 100  # following the answer

    page.mouse.wheel(0, -2000)
    page.wait_for_timeout(300)
    held = page.evaluate("scrollY")
    page.wait_for_timeout(500)
    assert page.evaluate("scrollY") == held  # scrolled up: the view stays

    page.click("#stop-button")
    stopped = page.locator(".message.assistant.stopped")
    expect(stopped).to_contain_text("Stopped: the answer above is partial.")
    expect(stopped.locator(".body")).to_contain_text("line 1")
    page.reload()
    expect(page.locator(".message.assistant.stopped .body")).to_contain_text("line 1")


def test_every_control_is_reached_with_the_keyboard(page, gunicorn_on_fake):
    page.goto(gunicorn_on_fake.url + "/")
    reached = set()
    for _ in range(25):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert {"message-input", "send-button", "search-input", "New chat"} <= reached
    for control in page.locator("button, textarea, input:not([type=hidden]), select").all():
        label = control.evaluate(
            "e => e.labels && e.labels.length ? e.labels[0].textContent"
            " : (e.getAttribute('aria-label') || e.textContent)"
        )
        assert label.strip(), control.evaluate("e => e.outerHTML")


def test_the_real_local_model_answers_in_the_browser(page, gunicorn_on_local_model):
    page.goto(gunicorn_on_local_model.url + "/")
    page.fill("#message-input", "What is the capital of France?")
    page.keyboard.press("Enter")
    answer = page.locator(".message.assistant.done .body")
    expect(answer).not_to_be_empty(timeout=60_000)
    assert answer.inner_text().strip()
    assert "<|im_" not in page.content()  # the model's ChatML markers never reach the page


def test_reload_mid_answer_keeps_streaming_to_the_whole_answer(page, instances, fake):
    """Switch to another chat and back, then reload onto another worker or another instance sharing Redis."""
    page.goto(instances[0].url + "/")
    words = [f" word{i}" for i in range(60)]
    ask(page, fake, "Tell a long tale", words, delay=0.1)
    streaming = page.locator(".message.assistant.streaming .body")
    expect(streaming).to_contain_text("word5")
    page.click("text=New chat")
    expect(page.locator(".message")).to_have_count(0)
    page.click("text=Tell a long tale")
    expect(streaming).to_contain_text("word15")  # still streaming, with what came meanwhile
    page.goto(page.url.replace(instances[0].url, instances[1].url))
    expect(streaming).to_contain_text("word30")
    expect(page.locator("#stop-button")).to_be_visible()
    done = page.locator(".message.assistant.done .body")
    whole = "".join(words).strip()
    expect(done).to_have_text(whole)
    expect(page.locator(".message")).to_have_count(2)
    page.reload()  # what was stored: the whole answer, no word missing or doubled
    expect(done).to_have_text(whole)


def test_the_picker_searches_the_catalogue_and_the_picked_model_answers(page, tmp_path, fake):
    fake.catalogue = ROUTER_MODELS
    environment = app_environment(
        tmp_path,
        API_URL=fake.url + "/v1",
        INFERENCE_API="",
        HF_API_TOKEN=TOKEN,
        MODEL_ID="meta-llama/Llama-3.1-8B-Instruct",
        CHAT_HUB_CACHE=str(tmp_path / "hub"),
    )
    with GunicornApp(environment) as app:
        page.goto(app.url + "/")
        picker = page.locator("#model-input")
        expect(picker).to_have_value("meta-llama/Llama-3.1-8B-Instruct")
        current = page.locator(".model-choice[aria-current=true]")
        expect(current).to_contain_text("context 131,072 tokens · $0.02 / $0.05 per M tokens in / out · novita, groq")
        offered = page.locator("#model-options option").evaluate_all("options => options.map(o => o.value)")
        assert "openai/gpt-oss-20b" in offered and "google/gemma-2-9b-it" not in offered  # live ones only
        picker.fill("openai/gpt-oss-20b")
        expect(page.locator("#model-options option")).to_have_count(1)  # the list, searched on the server as typed
        ask(page, fake, "Hello", ["Hi", "!"])
        expect(page.locator(".message.assistant.done .stats")).to_contain_text("via novita")
        assert fake.requests[-1].json["model"] == "openai/gpt-oss-20b"
        page.reload()
        expect(picker).to_have_value("openai/gpt-oss-20b")
        expect(page.locator("#current-model")).to_have_text("openai/gpt-oss-20b")
        expect(current).to_contain_text("by openai · context 131,072 tokens")
        page.goto("about:blank")  # before this server stops: a page left open would try to reconnect its socket


def test_reasoning_streams_apart_folds_when_done_and_survives_a_reload(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    thoughts = [f" step{i}" for i in range(40)]
    ask(page, fake, "Think it over", [" The", " answer."], reasoning=thoughts, delay=0.05)
    thinking = page.locator(".message.assistant.streaming details.reasoning")
    expect(thinking).to_be_visible()
    expect(thinking.locator("summary")).to_have_text("Thinking…")
    expect(thinking).to_contain_text("step5")
    expect(page.locator(".message.assistant.streaming .body")).to_have_text("")  # no answer yet, only thinking
    page.reload()  # mid-reasoning: the thinking so far, and it goes on
    expect(thinking).to_contain_text("step30")
    done = page.locator(".message.assistant.done")
    expect(done.locator(".body")).to_have_text("The answer.")
    folded = done.locator("details.reasoning")
    expect(folded.locator("summary")).to_contain_text("Thought for")
    assert folded.get_attribute("open") is None  # folded once the answer is there
    folded.locator("summary").click()
    expect(folded).to_contain_text("step39")
    assert "step0" not in done.locator(".body").inner_text()


def test_the_page_connects_again_when_the_person_comes_back(page, tmp_path, fake):
    """The server closes a socket left alone (tests/test_open_sockets.py); the next key or click opens it again."""
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, SOCKET_IDLE_MINUTES="0.05")
    with GunicornApp(environment, workers=1) as server:
        page.goto(server.url + "/")
        expect(page.locator("#notice")).to_contain_text("left alone", timeout=10_000)
        page.wait_for_timeout(500)
        fake.reply(tokens=["Back", " again"])
        page.fill("#message-input", "Are you there?")  # a click and keys: the socket opens again first
        page.keyboard.press("Enter")
        expect(page.locator(".message.assistant.done .body")).to_have_text("Back again")
        expect(page.locator("#notice")).not_to_contain_text("left alone")


def test_a_tab_refused_by_a_full_server_connects_by_itself_once_there_is_room(page, browser, tmp_path, fake):
    """One worker with room for one open chat: a second tab is told, tries again by itself, and gets in once the
    first closes; the notice goes and the chat answers."""
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, GUNICORN_THREADS="9")
    with GunicornApp(environment, workers=1) as server:
        first = browser.new_context()
        first.new_page().goto(server.url + "/")
        page.goto(server.url + "/")
        expect(page.locator("#notice")).to_contain_text("It tries again by itself", timeout=10_000)
        first.close()  # its socket closes: a place is free
        expect(page.locator("#notice")).to_have_text("", timeout=15_000)
        fake.reply(tokens=["Room", " now"])
        page.fill("#message-input", "Is there room?")
        page.keyboard.press("Enter")
        expect(page.locator(".message.assistant.done .body")).to_have_text("Room now")


def test_a_share_link_opens_the_snapshot_in_another_browser_and_copies(page, browser, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    ask(page, fake, "Best owl?", ["The **barn owl**"])
    expect(page.locator(".message.assistant.done .body strong")).to_have_text("barn owl")
    page.click("text=Rename, export or delete")
    page.select_option("#share-expires", "7")
    page.click("text=Make a share link")
    link = page.locator("#made-link").input_value()
    expect(page.locator("text=Share link 1")).to_be_attached()

    other = browser.new_context().new_page()  # someone else
    other.goto(link)
    expect(other.locator(".message.assistant .body strong")).to_have_text("barn owl")
    assert other.locator("[ws-connect], .sidebar, .edit").count() == 0
    other.click("text=Start your own copy of this chat")
    expect(other.locator(".message.user .body")).to_have_text("Best owl?")
    assert "/c/" in other.url and other.url != page.url
    other.context.close()


def test_an_image_picked_with_the_file_input_shows_as_a_thumbnail_and_reaches_the_model(page, tmp_path, fake):
    models = [{"name": "Seeing", "id": "google/gemma-3-27b-it", "api": "chat", "url": fake.url + "/v1", "images": True}]
    environment = app_environment(tmp_path, HF_API_TOKEN=TOKEN, MODELS=json.dumps(models))
    with GunicornApp(environment) as app:
        page.goto(app.url + "/")
        page.set_input_files("#file-input", files=[{"name": "red.png", "mimeType": "image/png", "buffer": png()}])
        chip = page.locator("#attachments .attachment")
        expect(chip.locator(".attachment-name")).to_have_text("red.png")  # uploaded
        expect(page.locator("#file-input")).to_have_value("")  # uploaded: the form does not carry it again
        ask(page, fake, "What colour is this?", ["Red", "."])
        expect(page.locator(".message.assistant.done")).to_contain_text("Red.")
        thumbnail = page.locator(".message.user .attachments img[alt='red.png']")
        expect(thumbnail).to_be_visible()
        assert thumbnail.evaluate("img => img.complete && img.naturalWidth") == 8  # loaded, under the page's CSP
        expect(chip).to_have_count(0)
        parts = fake.requests[-1].json["messages"][-1]["content"]
        assert parts[0]["text"] == "What colour is this?" and parts[1]["image_url"]["url"].startswith("data:image/png")
        page.reload()
        expect(thumbnail).to_be_visible()
        page.goto("about:blank")


DISPATCH = """([kind, name, text]) => {
    const files = new DataTransfer();
    files.items.add(new File([text], name, {type: "text/plain"}));
    const target = kind === "paste" ? document.getElementById("message-input") : document.getElementById("composer");
    const event = kind === "paste"
        ? new ClipboardEvent("paste", {clipboardData: files, bubbles: true, cancelable: true})
        : new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true});
    target.dispatchEvent(event);
}"""


def test_files_pasted_and_dropped_are_attached_and_one_can_be_removed(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    page.evaluate(DISPATCH, ["paste", "notes.md", "# Notes\nbuy milk"])
    page.evaluate(DISPATCH, ["drop", "rows.csv", "a,b\n1,2\n"])
    page.evaluate(DISPATCH, ["drop", "<img src=x onerror=window.hacked=1>.txt", "nothing"])
    chips = page.locator("#attachments .attachment")
    expect(chips.locator(".attachment-name")).to_have_count(3)  # uploaded
    expect(chips.locator(".keep-attachment").first).to_be_hidden()  # with the script, Remove instead
    chips.filter(has_text="onerror").locator(".remove-attachment").click()
    expect(chips).to_have_count(2)
    ask(page, fake, "What is in them?", ["Milk", " and numbers."])
    expect(page.locator(".message.assistant.done")).to_contain_text("Milk and numbers.")
    files = page.locator(".message.user .attachments a")
    expect(files).to_have_text(["notes.md", "rows.csv"])
    prompt = fake.requests[-1].json["inputs"]
    assert "Attached file: notes.md\n```\n# Notes\nbuy milk\n```" in prompt and "Attached file: rows.csv" in prompt
    assert "onerror" not in prompt and page.evaluate("window.hacked") is None
    expect(chips).to_have_count(0)


def test_files_keep_their_order_a_message_waits_for_an_upload_and_one_can_be_cancelled(page, gunicorn_on_fake, fake):
    held = []
    page.route("**/files", lambda route: held.append(route))  # each upload waits until the test lets it through
    page.goto(gunicorn_on_fake.url + "/")
    page.evaluate(DISPATCH, ["drop", "first.txt", "one"])
    page.evaluate(DISPATCH, ["drop", "second.txt", "two"])
    uploading = page.locator("#attachments .attachment.uploading")
    expect(uploading.locator("span")).to_have_text(["first.txt (uploading…)", "second.txt (uploading…)"])
    ask(page, fake, "What is in them?", ["One and two."])
    expect(page.locator("#notice")).to_contain_text("Wait for the files to finish uploading")
    expect(page.locator("#message-input")).to_have_value("What is in them?")
    expect(page.locator(".message.user")).to_have_count(0)
    held[1].continue_()  # the second one first
    held[0].continue_()
    expect(uploading).to_have_count(0)
    expect(page.locator("#attachments .attachment-name")).to_have_text(["first.txt", "second.txt"])

    page.evaluate(DISPATCH, ["drop", "third.txt", "three"])  # and one cancelled while it uploads
    page.get_by_role("button", name="Cancel third.txt").click()
    expect(uploading).to_have_count(0)
    held[2].continue_()  # too late: it was let go
    page.focus("#message-input")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.done")).to_contain_text("One and two.")
    expect(page.locator(".message.user .attachments a")).to_have_text(["first.txt", "second.txt"])


def test_a_file_is_sent_alone_with_enter(page, gunicorn_on_fake, fake):
    page.goto(gunicorn_on_fake.url + "/")
    page.focus("#message-input")
    page.keyboard.press("Enter")  # nothing to send yet
    page.evaluate(DISPATCH, ["drop", "notes.md", "buy milk"])
    expect(page.locator("#attachments .attachment-name")).to_have_text("notes.md")
    fake.reply(tokens=["Buy milk."])
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant.done .body")).to_have_text("Buy milk.")
    expect(page.locator(".message.user")).to_have_count(1)
    expect(page.locator(".message.user .attachments a")).to_have_text("notes.md")
    expect(page).to_have_title("notes.md · Chat")


def test_a_refused_or_dropped_upload_says_why_and_nothing_is_attached(browser, gunicorn_on_fake):
    context = browser.new_context()
    page = context.new_page()
    problems = []  # the browser logs the refused upload's 400 itself; anything else is a failure
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda line: problems.append(line.text) if line.type == "error" else None)
    page.goto(gunicorn_on_fake.url + "/")
    binary = {"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x00\x01\x02\xff" * 64}
    page.set_input_files("#file-input", files=[binary])
    expect(page.locator("#notice")).to_contain_text("tool.exe is neither an image")
    expect(page.locator("#attachments .attachment")).to_have_count(0)
    page.route("**/files", lambda route: route.abort())  # the network drops the next upload
    page.evaluate(DISPATCH, ["drop", "notes.md", "milk"])
    expect(page.locator("#notice")).to_have_text(
        "The file could not be uploaded: the chat could not be reached. Check the connection, then attach it again."
    )
    expect(page.locator("#attachments .attachment")).to_have_count(0)
    context.close()
    assert [line for line in problems if "status of 400" not in line and "net::ERR_FAILED" not in line] == []


def test_the_model_titles_the_chat_after_its_first_answer(page, tmp_path, fake):
    environment = app_environment(tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, MODEL_TITLES="true")
    with GunicornApp(environment) as app:
        page.goto(app.url + "/")
        fake.reply(tokens=["Take", " the", " train", " to", " Porto"])
        fake.reply(tokens=['"Train', " trip", ' to Porto."'])
        page.fill("#message-input", "How do I get from Lisbon to Porto cheaply?")
        page.keyboard.press("Enter")
        expect(page.locator(".message.assistant.done")).to_contain_text("Take the train to Porto")
        expect(page.locator("#conversation-title")).to_have_text("Train trip to Porto")  # swapped in, no reload
        expect(page.locator("#current-title-link")).to_have_text("Train trip to Porto")
        expect(page).to_have_title("Train trip to Porto · Chat")
        page.reload()
        expect(page.locator("#conversation-title")).to_have_text("Train trip to Porto")
        page.goto("about:blank")


def test_a_chat_whose_answer_called_a_tool_is_shared_only_once_its_box_is_ticked(
    page, browser, tmp_path, fake, mcp_log
):
    """The share form says the chat's answer called a tool, and the browser posts it only with the box ticked (it
    is required; a post without it is refused in words: tests/test_shares.py); the link then shows the call."""
    with GunicornApp(tool_chat_environment(tmp_path, fake, mcp_log)) as app:
        page.goto(app.url + "/")
        fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "private notes"}')])
        ask(page, fake, "Echo my notes", ["Echoed."])
        expect(page.locator(".message.assistant.done")).to_contain_text("Echoed.")
        page.reload()  # the form as the page makes it now the chat has tool results
        page.click("text=Rename, export or delete")
        expect(page.locator("text=a link shows anyone who has it what they returned")).to_be_visible()
        posted = []
        page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
        page.click("text=Make a share link")  # not ticked: the browser does not post
        expect(page.locator("input[name=with_tool_results]:invalid")).to_have_count(1)
        page.wait_for_timeout(500)
        assert posted == []
        page.check("input[name=with_tool_results]")
        page.click("text=Make a share link")
        expect(page.locator(".made-link")).to_contain_text("Anyone with this link can read the chat as it is now")
        link = page.locator("#made-link").input_value()
        other = browser.new_context().new_page()
        other.goto(link)
        expect(other.locator("details.tool-call summary")).to_contain_text('Called web__echo(text: "private notes")')
        other.context.close()
        page.goto("about:blank")


def test_an_image_a_tool_returned_shows_in_its_calls_block_and_an_svg_never_does(page, tmp_path, fake, mcp_log):
    with GunicornApp(tool_chat_environment(tmp_path, fake, mcp_log)) as app:
        page.goto(app.url + "/")
        calls = [("call_1", "web__image", "{}"), ("call_2", "web__disguised", "{}")]
        fake.reply(tokens=[], tool_calls=calls)
        ask(page, fake, "Draw", ["A red dot."])
        expect(page.locator(".message.assistant.done")).to_contain_text("A red dot.")
        image = page.locator("details.tool-call img")
        expect(image).to_have_count(1)
        page.locator("details.tool-call summary").first.click()
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth") == 1  # the PNG, from the chat's files
        assert page.locator("svg[onload]").count() == 0 and page.locator("details.tool-call").count() == 2
        page.goto("about:blank")


def test_a_tool_call_shows_running_at_its_place_then_done_with_the_text_after_it_and_there_after_a_reload(
    page, tmp_path, fake, mcp_log
):
    with GunicornApp(tool_chat_environment(tmp_path, fake, mcp_log)) as app:
        page.goto(app.url + "/")
        fake.reply(tokens=["Looking it up."], tool_calls=[("call_1", "web__hang", '{"seconds": 3}')])
        ask(page, fake, "Sleep on it", ["Slept", " well."], delay=0.2)
        body = page.locator(".message.assistant .body")
        running = body.locator("details.tool-call.running")
        expect(running).to_contain_text("Calling web__hang(seconds: 3)…")
        assert body.inner_text().index("Looking it up.") < body.inner_text().index("Calling web__hang")
        page.reload()  # while it runs: shown at its place, and followed
        expect(running).to_contain_text("Calling web__hang(seconds: 3)…")
        expect(body.locator("details.tool-call.done")).to_contain_text("Called web__hang(seconds: 3) · ")
        expect(page.locator(".message.assistant.done")).to_contain_text("Slept well.")
        for _ in range(2):  # as it ended, then after a reload
            shown = body.inner_text()
            assert shown.index("Looking it up.") < shown.index("Called web__hang") < shown.index("Slept well.")
            page.reload()
            expect(page.locator(".message.assistant.done")).to_contain_text("Slept well.")
        page.goto("about:blank")
