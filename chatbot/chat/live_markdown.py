"""Markdown rendered while an answer streams: complete blocks once, the open block again as it grows.

Fed the answer's text flush by flush, it parses only what follows the blocks it has committed. When the complete
lines there hold two top-level blocks or more, all but the last are complete (text added later cannot change
them): they are rendered once, to be appended. The last one, the open block, is rendered again and replaces the
one shown, so an unclosed code fence shows as a code block. What a flush costs is bounded by the open block,
never by the answer:

- an open code fence of FENCE_LINES complete lines or more has them committed, as a code block of its own in
  the same language; the rest of the fence goes on as the open block;
- the open block is rendered again only when what came can change how it looks (a markup character, or the
  first characters of a line), and once it is longer than SMALL_BLOCK characters (a long list, table or
  paragraph), only when it has grown by 1/GROWTH since; meanwhile the new text is added, escaped, at its end
  (for plain words in a paragraph, a list or a table, exactly what a render would show);
- an open block longer than LARGEST_OPEN characters (one list or table of a whole answer) is not rendered again
  at all: what follows is added as plain text until the answer ends, so that no one flush costs more than
  rendering LARGEST_OPEN characters.

The renderer and its rules are a finished answer's (chatbot.chat.rendering). Where the result differs from the
finished answer's rendering, which replaces it at the end: a link reference definition links the blocks after
it, not those committed before; a long fence is several code blocks; text added to a long open block stays
plain until that block is rendered again (or, past LARGEST_OPEN, until the end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate

from markdown_it.token import Token
from markupsafe import Markup

from chatbot.chat.rendering import render_markdown, top_level_blocks

FENCE_LINES = 40
SMALL_BLOCK = 128
GROWTH = 4
LARGEST_OPEN = 20_000
TAIL = '<span class="live-tail">{}</span>'  # where plain text is added to the open block
LINE_START = 12  # the first characters of a line, which can make it a new block
_MARKUP = re.compile(r"[\n*_`~\[\]()<>&\\|$]")  # what can change how the text before it renders
_CLOSING_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_END_OF_CODE = "</code></pre>\n"
_END_OF_BLOCKS = re.compile(r"(?:</(?:p|li|ul|ol|h[1-6]|blockquote|t[dhr]|thead|tbody|table)>\s*)*\Z")


@dataclass
class Update:
    """What a flush changes: HTML to append to the complete blocks, and the open block's new HTML; or, when
    the open block is not rendered again (`open` None), plain text to add at its end."""

    done: Markup = field(default_factory=Markup)
    open: Markup | None = None
    tail: str = ""


class LiveMarkdown:
    """One answer being written: feed it the text of each flush; a new one fed the text so far at once shows
    what a page shows."""

    def __init__(self, text: str = "") -> None:
        self.text = ""  # what follows the blocks rendered for good, newlines as "\n"
        self.fence = ""  # the opening line of a code fence whose first lines are rendered for good
        self.length = 0  # characters fed so far
        self.rendered_at = 0  # `length` when the open block was last rendered
        self.parsed_chars = 0  # characters given to the parser so far: the work done, for tests and the bench
        self._references: dict = {}  # the link reference definitions of the committed blocks
        self._carriage = False  # the text fed last ended with "\r", whose "\n" may come next
        self._line_length = 0  # characters of the line being written
        self._markup_due = False  # text added since the open block was rendered may change how it looks
        self.feed(text)

    def feed(self, text: str) -> Update:
        """Add the text of one flush; what to show for it."""
        text = self._normalised(text) if text else ""
        if not text:
            return Update()
        line_start = self._line_length < LINE_START
        self._markup_due = self._markup_due or line_start or bool(_MARKUP.search(text))
        self.text += text
        self.length += len(text)
        self._line_length = len(text) - text.rfind("\n") - 1 if "\n" in text else self._line_length + len(text)
        open_length = len(self.fence) + len(self.text)
        grown = (self.length - self.rendered_at) * GROWTH >= open_length
        if not self._markup_due or (open_length > SMALL_BLOCK and not grown) or open_length > LARGEST_OPEN:
            return Update(tail=text)
        done = self._commit()
        self.rendered_at, self._markup_due = self.length, False
        return Update(done, self._open_html())

    def end(self) -> Markup:
        """The text not rendered for good yet, rendered for good: the text ends here (a tool call follows it)."""
        text, self.text, self.fence = self.fence + self.text, "", ""
        return self._render(text) if text else Markup()

    def _normalised(self, text: str) -> str:
        """`text` with "\r\n" and "\r" as "\n", as markdown-it reads them (a "\r\n" may come in two flushes)."""
        if self._carriage and text.startswith("\n"):
            text = text[1:]
        self._carriage = text.endswith("\r")
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def _commit(self) -> Markup:
        """Render once the blocks that text added later can no longer change, and move past them."""
        lines = self.fence + self.text[: self.text.rfind("\n") + 1]  # complete lines: the last may change it all
        if lines == self.fence:
            return Markup()
        self.parsed_chars += len(lines)
        blocks = top_level_blocks(lines)
        starts = [0, *accumulate(len(line) + 1 for line in lines.split("\n")[:-1])]
        done, prefix, fence = Markup(), len(self.fence), self.fence
        cut = prefix  # where in `lines` what is not rendered for good starts
        if len(blocks) >= 2:
            cut, fence = starts[_lines(blocks[-1])[0]], ""
            done += self._render(lines[:cut])
        last = blocks[-1] if blocks else None
        if last is not None and last.type == "fence" and _open_fence_lines(last, lines, starts) >= FENCE_LINES:
            first, end = _lines(last)
            final = end - 1  # the opening line, and the last complete one, which stays open
            fence = lines[starts[first] : starts[first + 1]]
            piece = self._render(fence + lines[starts[first + 1] : starts[final]] + last.markup + "\n")
            done += Markup(str(piece).replace("<pre>", '<pre class="continues">', 1))  # the open block goes on with it
            cut = starts[final]
        self.text, self.fence = self.text[cut - prefix :], fence
        return done

    def _render(self, text: str) -> Markup:
        """Committed blocks, with the link references seen so far (and theirs kept for what follows)."""
        self.parsed_chars += len(text)
        return render_markdown(text, self._references)

    def _open_html(self) -> Markup:
        """The open block, with the place where plain text is added until it is rendered again."""
        text = self.fence + self.text
        self.parsed_chars += len(text)
        html = str(render_markdown(text, {"references": dict(self._references.get("references", {}))}))
        if html.endswith(_END_OF_CODE):
            code = html[: -len(_END_OF_CODE)]
            if code.endswith("\n") and not text.endswith("\n"):
                code = code[:-1]  # the highlighter ended the line being written
            return Markup(code + TAIL.format("") + _END_OF_CODE)
        closing = _END_OF_BLOCKS.search(html)  # the closing tags at the end, if any
        end = closing.start() if closing else len(html)
        space = " " if text[-1:].isspace() else ""  # the renderer trims the space that the next word follows
        return Markup(html[:end] + TAIL.format(space) + html[end:])


def _open_fence_lines(fence: Token, lines: str, starts: list[int]) -> int:
    """How many lines of code a fence that runs to the end of `lines` holds; 0 when it is closed."""
    first, end = _lines(fence)
    closing = _CLOSING_FENCE.fullmatch(lines[starts[end - 1] : starts[end] - 1])
    if end - first >= 2 and closing and closing[1][0] == fence.markup[0] and len(closing[1]) >= len(fence.markup):
        return 0
    return end - first - 1


def _lines(block: Token) -> tuple[int, int]:
    """The first line of a block and the line after its last (top_level_blocks gives only blocks that have them)."""
    return (block.map[0], block.map[1]) if block.map else (0, 0)


def rendered(text: str) -> tuple[Markup, Markup]:
    """(complete blocks, open block) of an answer being written, as a page shows it."""
    update = LiveMarkdown().feed(text)
    return update.done, update.open or Markup()
