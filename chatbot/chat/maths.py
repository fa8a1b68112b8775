"""TeX maths in markdown -> MathML drawn by the browser: `$...$`, `$$...$$`, `\\(...\\)` and `\\[...\\]`.

The TeX is the model's, so latex2mathml's output is not trusted: it is parsed again and written out with MathML
elements and plain attribute values only (latex2mathml passes `\\text{<b>}` through as a tag and `\\href` as an
attribute). Maths it cannot convert, or that would need more than that, is shown as its source, escaped, in code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from latex2mathml.converter import convert
from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markupsafe import escape
from mdit_py_plugins.dollarmath import dollarmath_plugin

LONGEST = 4_000  # characters of TeX in one formula; a longer one is shown as its source
_NAMESPACE = "{http://www.w3.org/1998/Math/MathML}"
_ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle mtable mtr mtd mlabeledtr "
    "mover munder munderover mpadded mphantom menclose merror mmultiscripts mprescripts none semantics".split()
)
_ATTRIBUTES = frozenset(
    "display mathvariant stretchy fence separator form lspace rspace accent accentunder movablelimits largeop "
    "symmetric minsize maxsize linethickness columnalign rowalign columnlines rowlines columnspacing rowspacing "
    "frame framespacing displaystyle scriptlevel width height depth notation align equalrows equalcolumns "
    "mathcolor mathbackground mathsize voffset columnspan rowspan".split()
)
_PLAIN_VALUE = re.compile(r"[\w .#%+-]*")  # no colon, bracket or quote: no URL, no CSS function


class _Unsafe(Exception):
    """latex2mathml wrote something that is not plain MathML."""


def mathml(tex: str, display: bool) -> str:
    """Safe MathML for `tex`, or its source in escaped code when it cannot be drawn."""
    if len(tex) <= LONGEST:
        try:
            converted = convert(tex, display="block" if display else "inline")
            if "<!" not in converted and "<?" not in converted:
                return _written(ElementTree.fromstring(converted))
        except (_Unsafe, RecursionError, ElementTree.ParseError):
            pass
        except Exception:  # noqa: BLE001 - latex2mathml's errors share no base class: any of them means "not maths"
            pass
    delimiter = "$$" if display else "$"
    return f'<code class="math-source">{escape(delimiter + tex + delimiter)}</code>'


def _written(element: ElementTree.Element) -> str:
    """`element` and what it holds as MathML text, every text escaped; _Unsafe for anything else."""
    if not element.tag.startswith(_NAMESPACE) or element.tag[len(_NAMESPACE) :] not in _ELEMENTS:
        raise _Unsafe(element.tag)
    name = element.tag[len(_NAMESPACE) :]
    attributes = "".join(
        f' {key}="{escape(value)}"'
        for key, value in element.attrib.items()
        if key in _ATTRIBUTES and _PLAIN_VALUE.fullmatch(value)
    )
    if name == "math":
        attributes = ' xmlns="http://www.w3.org/1998/Math/MathML"' + attributes
    inside = str(escape(element.text or "")) + "".join(
        _written(child) + str(escape(child.tail or "")) for child in element
    )
    return f"<{name}{attributes}>{inside}</{name}>"


def maths_plugin(md: MarkdownIt) -> None:
    """Dollar maths as pandoc reads it (no space inside the dollars, no digit after the closing one, so "$5 and
    $10" stays text), and the bracket forms, all drawn by `mathml`."""
    dollarmath_plugin(
        md,
        allow_labels=False,
        allow_space=False,
        allow_digits=False,
        allow_blank_lines=False,
        double_inline=True,
        renderer=lambda tex, options: mathml(tex, options["display_mode"]),
    )
    md.add_render_rule("math_inline_double", _display_in_a_line)
    md.inline.ruler.before("escape", "math_inline_brackets", _inline_brackets)
    md.block.ruler.before("fence", "math_block_brackets", _block_brackets, {"alt": ["paragraph", "blockquote"]})


def _display_in_a_line(renderer: Any, tokens: Sequence[Token], index: int, options: Any, env: Any) -> str:
    """Display maths written within a line of text: a span, since a paragraph cannot hold a div."""
    return f'<span class="math display">{mathml(tokens[index].content.strip(), True)}</span>'


_INLINE_CLOSING = {"(": ("\\)", "math_inline"), "[": ("\\]", "math_inline_double")}


def _inline_brackets(state: StateInline, silent: bool) -> bool:
    """`\\(...\\)` inline, `\\[...\\]` in a line of text: the same tokens as the dollar forms."""
    opening = state.src[state.pos : state.pos + 2]
    if len(opening) < 2 or opening[0] != "\\" or opening[1] not in _INLINE_CLOSING:
        return False
    closing, kind = _INLINE_CLOSING[opening[1]]
    end = state.src.find(closing, state.pos + 2)
    if end < 0 or not state.src[state.pos + 2 : end].strip():
        return False
    if not silent:
        token = state.push(kind, "math", 0)
        token.content = state.src[state.pos + 2 : end]
        token.markup = opening
    state.pos = end + 2
    return True


def _block_brackets(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """A `\\[` line that opens display maths, to the line that ends with `\\]` (none blank between)."""
    if state.sCount[start] - state.blkIndent >= 4:
        return False  # an indented code block
    first = state.src[state.bMarks[start] + state.tShift[start] : state.eMarks[start]]
    if not first.startswith("\\["):
        return False
    line, text = start, first[2:]
    if "\\]" in text and not text.rstrip().endswith("\\]"):
        return False  # maths within a line of text: the inline rule's
    lines: list[str] = []
    while not text.rstrip().endswith("\\]"):
        lines.append(text)
        line += 1
        if line >= end:
            return False
        text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
        if not text.strip():
            return False
    lines.append(text.rstrip()[:-2])
    if not silent:
        token = state.push("math_block", "math", 0)
        token.block = True
        token.content = "\n".join(lines)
        token.markup = "\\["
        token.map = [start, line + 1]
    state.line = line + 1
    return True
