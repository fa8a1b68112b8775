"""Where an answer's tool calls happened in its text, and its text cut there, so each call shows at its place.

A call's record (chat/tool_calls.py) keeps "at": how many characters of the answer's visible text (its reasoning
apart) came before the call. While the answer is written, that is a place in the text as written; when it ends,
one in the content it keeps (`settle`: the text cut at a stop sequence and stripped). A record without one (an
answer kept before calls had places, or an import of one) is shown above the text, as it was then.

A finished answer's HTML is its pieces' (the text between two places), each rendered on its own and joined by CUT,
an HTML comment that rendered markdown never holds (raw HTML from a model is escaped): a page cuts it there again
and shows the calls between the pieces, without rendering markdown at every view.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from chatbot.chat import tool_calls
from chatbot.chat.rendering import render_markdown
from chatbot.stores.conversations import Message

CUT = "<!--tool-calls-->"

Numbered = tuple[int, dict[str, Any]]  # a record and its index in meta["tool_calls"] (a live block's id)
Group = tuple[int, list[Numbered]]  # a place and the calls made there, in order


def place_of(record: dict[str, Any]) -> int | None:
    """The record's place, or None when it has none."""
    place = record.get("at")
    return place if isinstance(place, int) and not isinstance(place, bool) else None


def grouped(records: list[dict[str, Any]]) -> tuple[list[Numbered], list[Group]]:
    """(the calls without a place, the others grouped by place in the order they were made)."""
    unplaced: list[Numbered] = []
    groups: list[Group] = []
    for index, record in enumerate(records):
        place = place_of(record)
        if place is None:
            unplaced.append((index, record))
        elif groups and groups[-1][0] == place:
            groups[-1][1].append((index, record))
        else:
            groups.append((place, [(index, record)]))
    return unplaced, groups


def placed(records: list[dict[str, Any]]) -> list[Numbered]:
    """The calls that have a place, in the order they were made."""
    return [numbered for _, calls in grouped(records)[1] for numbered in calls]


def pieces(text: str, groups: list[Group]) -> list[str]:
    """`text` cut at the places of `groups`: one piece more than them (places past its end, or before an earlier
    one, taken as the nearest that is not)."""
    bounds, last = [0], 0
    for place, _ in groups:
        last = min(max(place, last), len(text))
        bounds.append(last)
    bounds.append(len(text))
    return [text[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def rendered(content: str, records: list[dict[str, Any]]) -> str:
    """A finished answer's HTML: the pieces of its `content` between its calls, rendered each, joined by CUT
    (none: that of `content`, "" when it is empty)."""
    return CUT.join(str(render_markdown(piece)) for piece in pieces(content, grouped(records)[1]))


def finished(html: str, records: list[dict[str, Any]]) -> tuple[list[Numbered], list[tuple[Markup, list[Numbered]]]]:
    """A finished answer as a page shows it: (the calls shown above its text, then each piece of its `html` with
    the calls made after it). HTML not cut for these calls (made before they had places) shows them all above."""
    unplaced, groups = grouped(records)
    htmls = html.split(CUT)
    if len(htmls) != len(groups) + 1:
        return unplaced + [n for _, calls in groups for n in calls], [(Markup("".join(htmls)), [])]
    return unplaced, [(Markup(piece), calls) for piece, (_, calls) in zip(htmls, [*groups, (0, [])], strict=True)]


def live(said: str, records: list[dict[str, Any]]) -> tuple[list[Numbered], list[tuple[Markup, list[Numbered]]], str]:
    """An answer being written, its text `said` so far: (the calls shown above it, each piece before the last
    place rendered with the calls made after it, and the text after the last place, which grows)."""
    unplaced, groups = grouped(records)
    cut = pieces(said, groups)
    return unplaced, [(render_markdown(piece), calls) for piece, (_, calls) in zip(cut, groups, strict=False)], cut[-1]


def settle(message: Message, said: str) -> None:
    """An answer that ended: its calls' places moved from its text as written (`said`) to its content (`said` cut
    at a stop sequence and stripped), a call still running then kept as failed, and its HTML made."""
    lead, length = len(said) - len(said.lstrip()), len(message.content)
    records = [tool_calls.interrupted(record) for record in message.meta.get("tool_calls", [])]
    for record in records:
        if (place := place_of(record)) is not None:
            record["at"] = min(max(place - lead, 0), length)
    if records:
        message.meta["tool_calls"] = records
    message.html = rendered(message.content, records)


def imported(records: list[dict[str, Any]], length: int) -> None:
    """An import's places made such as this chat writes: within its text of `length` characters, in order."""
    last = 0
    for record in records:
        if (place := place_of(record)) is not None:
            last = record["at"] = min(max(place, last), length)
