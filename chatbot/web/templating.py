"""The template globals and filters every page uses: reasoning, live markdown, tool calls, file sizes, failures'
hints, the message actions' icons."""

from __future__ import annotations

from flask import Flask
from markupsafe import Markup, escape

from chatbot.chat import attachments, live_markdown, reasoning, tool_calls
from chatbot.services import errors


def init_app(app: Flask) -> None:
    app.add_template_global(reasoning.thought_for, "thought_for")
    app.add_template_global(reasoning.label, "reasoning_label")
    app.add_template_global(reasoning.split, "split_reasoning")  # (reasoning, answer) of an answer being written
    app.add_template_global(live_markdown.rendered, "live_markdown")
    app.add_template_global(tool_calls.summary, "tool_call_summary")  # "name(key: value)", cut short
    app.add_template_global(tool_calls.pretty, "tool_call_arguments")  # indented JSON
    app.add_template_filter(attachments.megabytes, "file_size")
    app.add_template_global(errors.hint_for, "error_hint")  # what to do about a failure, for its reader
    app.add_template_global(icon, "icon")


def icon(name: str) -> Markup:
    """One of the icons templates/icons/_sprite.html holds once a page (base.html), drawn at 16 pixels: a function
    rather than a macro, which Jinja would import anew for each of a long chat's messages."""
    use = f'<use href="#icon-{escape(name)}"/>'
    return Markup(f'<svg class="icon" aria-hidden="true" focusable="false" width="16" height="16">{use}</svg>')
