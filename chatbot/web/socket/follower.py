"""Answers written elsewhere (another tab, worker or host) shown in this tab as they grow: what is saved so far,
then each new part read from the store, until the answer ends."""

from __future__ import annotations

import threading
import time

from flask import Flask

from chatbot.chat import reasoning
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind
from chatbot.chat.running import is_abandoned, running_answer, settle_abandoned
from chatbot.services.thinking import TagSplitter
from chatbot.stores.conversations import Message
from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import store
from chatbot.web.socket.view import TabView

FOLLOW_SECONDS = 0.25  # how often a following tab looks for more of the answer


class Follower:
    """Follows, for one tab (`view`), the answer being written in its conversation, in a thread of its own."""

    def __init__(self, app: Flask, view: TabView) -> None:
        self.app = app
        self.view = view

    def follow_running_answer(self) -> None:
        """A reloaded tab, or one on another worker: show the answer so far and keep streaming it (only when
        it is on the branch the tab shows; otherwise the tab hears when it ends)."""
        messages = store().messages(self.view.conversation)
        answer = running_answer(messages)
        if answer is not None and settle_abandoned(store(), answer):
            self.view.on_event(Event(Kind.FINISHED, answer))
        elif answer is not None:
            if not Tree(messages).shows(self.view.shown_last, answer.id):
                self.view.hidden.add(answer.id)
            self.start(answer)

    def start(self, answer: Message) -> None:
        self.view.answering = True
        threading.Thread(target=self.follow, args=(answer,), daemon=True, name="follow").start()

    def follow(self, answer: Message) -> None:
        """Send the answer as it grows, until it ends or this socket closes."""
        with self.app.app_context():
            try:
                self.follow_to_the_end(answer)
            except StoreUnavailable as error:
                self.view.answering = False
                self.view.notice(str(error))

    def follow_to_the_end(self, answer: Message) -> None:
        """Read only the new part each time, and send it; the finished answer replaces it all. Shown again by a
        switch, the answer is read whole once more."""
        conversation = self.view.conversation
        seen, router = self.catch_up(answer)
        card = answer.meta.get("approval")  # a tool call's card, shown with the answer so far
        alive = True
        while alive:
            time.sleep(FOLLOW_SECONDS)
            rejoining = answer.id in self.view.rejoining
            new = store().read_message(conversation, answer.id, 0 if rejoining else seen)
            if new is None:  # deleted meanwhile
                self.view.answering = False
                return
            if new.status == "streaming" and not is_abandoned(new):
                if rejoining:
                    seen, router = self.catch_up(new)  # its card too
                else:
                    alive = self.view.send_followed(new, router.feed(new.content))
                    seen += len(new.content)
                if new.meta.get("approval") != card:  # shown, or answered here or in any tab
                    card = new.meta.get("approval")
                    if not rejoining:
                        self.view.on_event(Event(Kind.ASKING, new))
                continue
            final = store().read_message(conversation, answer.id)
            if final is not None:  # the finished fragment replaces the whole answer
                settle_abandoned(store(), final)
                self.view.on_event(Event(Kind.FINISHED, final))
            return

    def catch_up(self, answer: Message) -> tuple[int, TagSplitter]:
        """Show the answer as saved so far; where to read on from, and how to tell its reasoning from its text
        from there."""
        router = reasoning.router()
        said = "".join(text for thinking, text in router.feed(answer.content) if not thinking)
        self.view.caught_up(answer, said)
        return len(answer.content), router
