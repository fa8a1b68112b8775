"""Markdown rendered while an answer streams: complete blocks once, the open block again, flat cost."""

import re

import pytest

from chatbot.chat import reasoning
from chatbot.chat.live_markdown import FENCE_LINES, LARGEST_OPEN, LiveMarkdown, rendered
from chatbot.chat.rendering import render_markdown
from chatbot.stores.conversations import Message, new_id
from chatbot.web import create_app
from chatbot.web.socket.fragments import Fragments
from tests.helpers import open_chat
from tests.samples import mixed, one_block
from tests.servers import shown_answer

LIVE_TAIL = re.compile(r'<span class="live-tail">[^<]*</span>')

DOCUMENTS = [
    "# Title\n\nSome *emphasis* and **bold** text, `code` and ~~struck~~.\n\n- one\n- two\n\n1. a\n2. b\n\nEnd.\n",
    "```python\ndef f():\n\n\n    return 1  # blank lines inside a fence\n```\n\nAfter the code.\n",
    "Setext heading\n==============\n\nTwo lines\nof a heading\n---\n\nParagraph\n# a heading interrupts it\nx\n",
    "- a loose list\n\n- with blank lines\n\n  and a second paragraph\n\n- third\n\nNot in the list.\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\nfoo\n| h |\n|-x\n",
    "> a quote\nlazily continued\n\n1. one\n   - nested\n   - items\n2. two\n\n***\n\n    indented code\n\ndone\n",
    "[ref]: https://example.org/ref\n\nA [link](https://example.org) and [ref] and <https://example.org/auto>.\n",
    "Euler: $e^{i\\pi}+1=0$ and \\(x^2\\), a sum $$a+b$$ in a line.\n\n$$\n\\int_0^1 x\\,dx\n$$\n\n"
    "\\[\n\\frac{a}{b}\n\\]\n\nIt costs $5 and $10, and $x$ is maths.\n",
    "foo\n#hello is not a heading\n\n~~~\ntilde fence\n~~~\nline\r\nwith CRLF\r\n\r\nend\n",
]


def tokens(text):
    """Token-sized pieces, as a model writes them."""
    return re.findall(r"\s*\S{1,4}|\s+", text)


def streamed(text, per_flush, live=None):
    """Feed `text` in flushes of `per_flush` tokens: the updates."""
    live = live or LiveMarkdown()
    pieces = tokens(text)
    return [live.feed("".join(pieces[i : i + per_flush])) for i in range(0, len(pieces), per_flush)]


@pytest.fixture(scope="module")
def fragments():
    """The socket's fragments, of one app for the whole module (each app compiles its routes again)."""
    return Fragments(create_app({"TESTING": True, "SECRET_KEY": "test", "CHAT_STORE_URL": "memory://"}))


def shown(updates, fragments, page=("", "")):
    """The answer's HTML as a tab shows it after these updates (from a page showing `page`)."""
    start = f'<div class="body markdown" id="text-m">{page[0]}<div class="live-open" id="open-m">{page[1]}</div></div>'
    return shown_answer([start, *(fragments.text("m", update) for update in updates)])


@pytest.mark.parametrize("per_flush", [1, 2, 3, 7])
@pytest.mark.parametrize("document", DOCUMENTS)
def test_what_streams_ends_as_the_whole_answer_renders(document, per_flush, fragments):
    assert LIVE_TAIL.sub("", shown(streamed(document, per_flush), fragments)) == render_markdown(document)


def test_complete_blocks_are_sent_once_and_the_open_one_again():
    updates = streamed(DOCUMENTS[0], 1)
    appended = "".join(update.done for update in updates)
    for block in ("<h1>Title</h1>", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>", "<ol>\n<li>a</li>\n<li>b</li>\n</ol>"):
        assert appended.count(block) == 1
    assert sum("<h1>Title" in (update.open or "") for update in updates) > 1  # re-rendered while it was open
    assert "End." not in appended  # the last block is still open at the end


def test_an_unclosed_fence_shows_as_code():
    live = LiveMarkdown()
    assert "Look:" in live.feed("Look:\n\n```python\nx = 1\n").done  # the paragraph before it is complete
    update = live.feed("print(")
    assert '<pre><code class="language-python">' in update.open and "```" not in update.open
    assert '<span class="live-tail"></span></code></pre>' in update.open  # later text lands in the code


def test_maths_is_drawn_as_soon_as_its_closing_delimiter_comes():
    live = LiveMarkdown("A sentence long enough to leave the start of its line behind:")
    delimiters = [("$", "$"), ("\\(", "\\)"), ("$$", "$$"), ("\\[", "\\]")]
    for drawn, (opening, closing) in enumerate(delimiters, start=1):
        live.feed(f" {opening}x+1")
        update = live.feed(closing)
        assert update.open is not None and update.open.count("<math") == drawn, (opening, update)


def test_raw_html_is_escaped_in_every_part(fragments):
    text = "<script>alert(1)</script> and <b>bold</b>\n\n" + "plain words " * 40 + "<script>x</script>"
    sent = [fragments.text("m", update) for update in streamed(text, 1)]
    assert not any("<script" in fragment or "<b>" in fragment for fragment in sent)
    assert any("&lt;" in fragment and ".live-tail" in fragment for fragment in sent)  # added as text too


def test_text_that_changes_nothing_is_added_as_text_and_a_long_block_is_rendered_less_often():
    live = LiveMarkdown("A sentence that has started")
    assert live.feed(" and goes on").open is None  # plain words render the same: added at the end
    assert live.feed(" with **bold**").open is not None
    live = LiveMarkdown("word " * 200)
    assert live.feed("**bold**").open is None  # a long open block waits until it has grown by a quarter
    assert live.feed(" **more**" * 40).open is not None


def test_a_long_code_block_is_committed_in_pieces_that_stay_code(fragments):
    code = "".join(f"line_{n} = {n}\n" for n in range(3 * FENCE_LINES))
    updates = streamed("```python\n" + code, 1)
    html = shown(updates, fragments)
    assert html.count('<pre class="continues"><code class="language-python">') == 2
    assert html.count('<code class="language-python">') == 3 and "```" not in html
    assert "".join(re.sub(r"<[^>]+>", "", part) for part in re.findall(r"<code[^>]*>(.*?)</code>", html, re.S)) == code


def test_no_flush_renders_more_than_the_largest_open_block():
    live, most = LiveMarkdown(), 0
    for _ in range(25_000):  # one list of 200,000 characters, in pieces of 8
        before = live.parsed_chars
        live.feed("- item\n" if live.length % 80 == 0 else "[[[[[[[[")
        most = max(most, live.parsed_chars - before)
    assert most <= 3 * LARGEST_OPEN  # the complete lines, the open block, and a committed part at most


def test_a_page_and_a_tab_following_it_agree(fragments):
    whole = DOCUMENTS[0] + DOCUMENTS[1]
    half = len(whole) // 2
    page = rendered(whole[:half])
    follower = LiveMarkdown(whole[:half])  # what a following tab starts from: what the page shows
    assert LIVE_TAIL.sub("", shown(streamed(whole[half:], 3, follower), fragments, page)) == render_markdown(whole)


def test_a_reference_defined_later_does_not_link_what_was_committed_before(fragments):
    text = "See [ref].\n\nMore.\n\n[ref]: https://example.org\n\nAnd [ref] again.\n"
    html = LIVE_TAIL.sub("", shown(streamed(text, 2), fragments))
    assert html.startswith("<p>See [ref].</p>") and 'href="https://example.org"' in html
    assert render_markdown(text).startswith('<p>See <a href="https://example.org"')  # the finished answer links it


@pytest.mark.parametrize("per_flush", [1, 3])
def test_the_work_per_character_does_not_grow_with_the_answer(per_flush):
    def parsed_per_character(pieces):
        live = LiveMarkdown()
        for index in range(0, len(pieces), per_flush):
            live.feed("".join(pieces[index : index + per_flush]))
        return live.parsed_chars / live.length

    short, long = parsed_per_character(mixed(500)), parsed_per_character(mixed(20_000))
    assert long < 1.2 * short and long < 30
    assert parsed_per_character(one_block(20_000, code=True)) < 30
    assert parsed_per_character(one_block(20_000, code=False)) < 30


def test_the_page_shows_the_answer_being_written_as_markdown_and_its_reasoning_as_text(app, client, store):
    chat = open_chat(client)
    with client.session_transaction() as session:
        conversation = store.get_conversation(session["owner"], chat.rsplit("/", 1)[-1])
    store.add_message(Message(new_id(), conversation.id, "user", "Think"))
    content = f"{reasoning.START}I think **this** <i>{reasoning.END}The **answer**:\n\n```sh\necho hi\n"
    answer = store.add_message(Message(new_id(), conversation.id, "assistant", content, status="streaming"))
    page = client.get(chat).text
    assert f'<div class="plain" id="reasoning-{answer.id}">I think **this** &lt;i&gt;</div>' in page
    done, open_html = rendered("The **answer**:\n\n```sh\necho hi\n")
    assert f'id="text-{answer.id}">{done}<div class="live-open" id="open-{answer.id}">{open_html}</div>' in page
    assert "<strong>answer</strong>" in done and '<code class="language-sh">' in open_html
    assert f'<summary id="reasoning-summary-{answer.id}">Reasoning</summary>' in page  # it has ended: not "Thinking…"
