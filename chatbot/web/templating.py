"""The template globals and filters every page uses: reasoning, live markdown, tool calls, file sizes, failures'
hints, the message actions' icons."""

from __future__ import annotations

from flask import Flask
from markupsafe import Markup, escape

from chatbot.chat import attachments, live_markdown, reasoning, tool_call_places, tool_calls
from chatbot.services import errors

ICON_NAMES = ("previous", "next", "copy", "edit", "regenerate", "branch")  # the drawings of templates/icons/


def init_app(app: Flask) -> None:
    app.add_template_global(reasoning.thought_for, "thought_for")
    app.add_template_global(reasoning.label, "reasoning_label")
    app.add_template_global(reasoning.split, "split_reasoning")  # (reasoning, answer) of an answer being written
    app.add_template_global(live_markdown.rendered, "live_markdown")
    app.add_template_global(tool_calls.summary, "tool_call_summary")  # "name(key: value)", cut short
    app.add_template_global(tool_calls.pretty, "tool_call_arguments")  # indented JSON
    app.add_template_filter(tool_calls.visible, "visible")  # a bidi override or zero-width mark as its escape
    app.add_template_global(tool_call_places.finished, "placed_tool_calls")  # the text cut where calls were made
    app.add_template_global(tool_call_places.live, "live_tool_calls")  # and while it is written
    app.add_template_filter(attachments.megabytes, "file_size")
    app.add_template_global(errors.hint_for, "error_hint")  # what to do about a failure, for its reader
    app.jinja_env.globals["icons"] = {name: icon(name) for name in ICON_NAMES}  # icons["copy"]: a lookup, no call


def icon(name: str) -> Markup:
    """One of the icons templates/icons/_sprite.html holds once a page (base.html): a short <use> of it, sized by the
    CSS (.icon-action .icon). Templates look it up in `icons`, made once: a long chat draws thousands."""
    return Markup(f'<svg class="icon" aria-hidden="true"><use href="#icon-{escape(name)}"/></svg>')
