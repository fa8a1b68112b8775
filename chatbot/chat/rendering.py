"""Markdown -> safe HTML: raw HTML from the model is shown as text, code is highlighted, maths drawn as MathML."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chatbot.chat.maths import maths_plugin

_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Pygments spans for a fenced block; empty to let markdown-it escape it plainly."""
    try:
        lexer = get_lexer_by_name(language.strip()) if language.strip() else None
    except ClassNotFound:
        lexer = None
    return highlight(code, lexer, _FORMATTER) if lexer else ""


_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
    .use(maths_plugin)
)


def _link_open(renderer, tokens, index, options, env):
    """Links from a model open in a new tab and pass no referrer or trust."""
    tokens[index].attrSet("target", "_blank")
    tokens[index].attrSet("rel", "nofollow noopener noreferrer")
    return renderer.renderToken(tokens, index, options, env)


_MARKDOWN.add_render_rule("link_open", _link_open)


def render_markdown(text: str, env: dict | None = None) -> Markup:
    """Safe HTML for an answer: HTML tags in `text` are escaped, unsafe links dropped. `env` keeps the link
    reference definitions seen, for a text rendered in parts (chatbot/chat/live_markdown.py)."""
    return Markup(_MARKDOWN.render(text, env))


def top_level_blocks(text: str) -> list[Token]:
    """The token that opens each top-level block of `text`, with the lines it spans (`map`); inline markdown
    is not parsed."""
    tokens: list[Token] = []
    _MARKDOWN.block.parse(text, _MARKDOWN, {}, tokens)
    return [token for token in tokens if token.level == 0 and token.map]
