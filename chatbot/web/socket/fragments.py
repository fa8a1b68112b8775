"""Every fragment the chat socket sends, rendered from templates (no HTML and no DOM id is written in Python): those
sent while an answer streams from the macros of chat/_live.html, fetched once; the others from their own."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template
from markupsafe import Markup

from chatbot.chat.branches import Tree
from chatbot.chat.live_markdown import Update
from chatbot.chat.shown_body import Rest
from chatbot.stores.conversations import Conversation, Message
from chatbot.web.common import model_menu


class Fragments:
    """The fragments of one app, for one reader: `runs_the_chat` when they may change its configuration (failures
    are told to them with `.env`)."""

    def __init__(self, app: Flask, runs_the_chat: bool = False) -> None:
        self.app = app
        self.runs_the_chat = runs_the_chat
        self.live: Any = app.jinja_env.get_template("chat/_live.html").module  # its macros, compiled once

    def text(self, message_id: str, update: Update) -> str:
        """One update of the answer's text ("" when it changes nothing shown)."""
        if update.open is None:
            return self.live.tail(message_id, update.tail) if update.tail else ""
        done = self.live.done(message_id, update.done) if update.done else Markup()
        return done + self.live.open(message_id, update.open)

    def reasoning(self, message_id: str, text: str) -> str:
        return self.live.reasoning(message_id, text)

    def reasoned(self, message_id: str, text: str) -> str:
        """How long the model thought, in words."""
        return self.live.reasoned(message_id, text)

    def waiting(self, message_id: str, text: str) -> str:
        """How long the wait for a loading model may still take, in words."""
        return self.live.waiting(message_id, text)

    def placed_call(self, answer: Message, index: int, before: Markup) -> str:
        """A tool call's block at the end of the text shown, after `before` (the open block, rendered for good): the
        text that follows goes after it."""
        block = self.render("chat/_tool_call.html", message=answer, call=answer.meta["tool_calls"][index], index=index)
        return self.live.done(answer.id, before + Markup(block)) + self.live.open(answer.id, "")

    def changed_call(self, answer: Message, index: int) -> str:
        """A tool call's block in place of the one shown (it ended)."""
        call = answer.meta["tool_calls"][index]
        return self.render("chat/_tool_call.html", message=answer, call=call, index=index, changed=True)

    def asking(self, answer: Message) -> str:
        """The card of a tool call that waits for the user's yes, or none any more."""
        return self.render("chat/_approval.html", message=answer, oob=True)

    def notice(self, text: str) -> str:
        with self.app.app_context():
            return render_template("chat/_notice.html", text=text, oob=True)

    def started(self, user: Message | None, answer: Message, tree: Tree | None, conversation: Conversation) -> str:
        """A new answer (after its question, or the whole branch shown anew for an edit or a regeneration)."""
        messages = tree.path_to(answer.id) if tree else None
        return self.render(
            "chat/_started.html", user=user, answer=answer, messages=messages, tree=tree, conversation=conversation
        )

    def resumed(self, answer: Message, body: tuple) -> str:
        """The answer whole as it is now, to go on from; its body as chat/tool_call_places.py and
        chat/live_markdown.py render it (the calls above its text, its pieces with their calls, the complete blocks
        after the last call and the open block)."""
        return self.render("chat/_resumed.html", answer=answer, body=body)

    def finished(self, answer: Message, shown: bool, last: Message, tree: Tree, left: str, rest: Rest | None) -> str:
        """The answer as it ended: with its body whole, or (`rest`) only what the body shown lacks of it."""
        return self.render(
            "chat/_finished.html", answer=answer, shown=shown, last=last, tree=tree, left=left, rest=rest
        )

    def model(self, conversation: Conversation, config: dict) -> str:
        """The header's model menu, with the model picked now (here or in another tab) and its settings."""
        return render_template(
            "chat/_model.html", conversation=conversation, oob=True, **model_menu(conversation, config)
        )

    def titled(self, conversation: Conversation) -> str:
        return render_template("chat/_titled.html", conversation=conversation)

    def switched(self, branch: list[Message], tree: Tree, busy: bool) -> str:
        return self.render("chat/_switched.html", messages=branch, tree=tree, busy=busy)

    def render(self, template: str, **context: Any) -> str:
        """A fragment with messages in it: their failures worded for this reader."""
        return render_template(template, runs_the_chat=self.runs_the_chat, **context)
