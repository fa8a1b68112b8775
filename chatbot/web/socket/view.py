"""What one tab shows, and the fragments that keep it so. The read loop, the thread that writes an answer and the
one that follows an answer written elsewhere all change it, so they do it under its lock: fragments go out in
order, and a switch of branch comes before or after an event, never between."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from markupsafe import Markup
from simple_websocket import ConnectionClosed

from chatbot.chat import reasoning, tool_call_places
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind
from chatbot.chat.live_markdown import LiveMarkdown
from chatbot.chat.shown_body import ShownBody
from chatbot.stores.conversations import Conversation, Message
from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import store
from chatbot.web.socket.fragments import Fragments


class Sends(Protocol):
    """Where fragments go: the socket (simple_websocket's server side, or a fake in tests)."""

    def send(self, data: str) -> None: ...


# Not shown while the tab shows another branch.
TEXT_EVENTS = {Kind.DELTA, Kind.REASONING, Kind.REASONED, Kind.WAITING, Kind.CALLING, Kind.ASKING}


class TabView:
    """The tab's branch (`shown_last`), the answers being written whose text it does not show (`hidden`: another
    branch) or shows again whole (`rejoining`: a switch back), and the answer's text as shown (`live`: since its
    last tool call; `said_length`: all of it) with its tool calls (`calls_shown`: the status of each, in order), and
    what its body holds for good (`body`: unknown after a switch, until the answer is shown again)."""

    def __init__(self, ws: Sends, fragments: Fragments, conversation: Conversation, left: Callable[[], str]) -> None:
        self.ws = ws
        self.fragments = fragments
        self.conversation = conversation  # read again before each action
        self.left = left  # what the owner's account has left today, in words ("" without accounts)
        self.lock = threading.RLock()  # held while a fragment is chosen and sent
        self.answering = False  # an answer is being sent on this socket (written here, or followed)
        self.shown_last = conversation.leaf_id  # the last message of the branch this tab shows
        self.hidden: set[str] = set()
        self.rejoining: set[str] = set()
        self.live = LiveMarkdown()  # the answer being sent, as it is shown
        self.said_length = 0
        self.calls_shown: list[str] = []
        self.body = ShownBody()
        self.shows: dict[Kind, Callable[[Event], object]] = {
            Kind.STARTED: self.started,
            Kind.RESUMED: self.resumed,
            Kind.WAITING: lambda event: self.send(fragments.waiting(event.message.id, event.text)),
            Kind.CALLING: lambda event: self.show_calls(event.message),
            Kind.ASKING: lambda event: self.send(fragments.asking(event.message)),
            Kind.REASONING: lambda event: self.send_reasoning(event.message.id, event.text),
            Kind.REASONED: lambda event: self.send(fragments.reasoned(event.message.id, event.text)),
            Kind.DELTA: lambda event: self.send_text(event.message.id, event.text),
            Kind.FINISHED: self.finished,
            Kind.TITLED: lambda event: self.send(fragments.titled(self.conversation)),
        }

    def on_event(self, event: Event) -> None:
        """Show what happened to an answer (a listener of chat/answer_writer.py, and of the follower)."""
        with self.lock:
            answer_id = event.message.id
            if event.kind in TEXT_EVENTS and answer_id in self.hidden:
                return  # this tab went to another branch while the answer is written: it hears only that it ended
            if answer_id in self.rejoining and event.so_far is not None:  # shown again: all so far, this included
                self.rejoining.discard(answer_id)
                self.resume(replace(event.message, content=event.so_far()))
            else:
                self.shows[event.kind](event)

    def started(self, event: Event) -> None:
        """The new messages added to the branch shown; the whole branch shown anew only when they follow another
        message (an edit, or a send that did not say what the tab shows and went to another branch): a history
        rendered again for every answer would cost more with each."""
        tree = event.tree
        if event.user_message is not None and event.user_message.parent_id == self.shown_last:
            tree = None  # they follow what this tab shows last
        self.shown_last = event.message.id
        self.hidden.discard(event.message.id)
        self.live, self.said_length, self.calls_shown = LiveMarkdown(), 0, []
        self.body = ShownBody(event.message.id)
        self.send(self.fragments.started(event.user_message, event.message, tree, self.conversation))

    def resumed(self, event: Event) -> None:
        self.shown_last = event.message.id
        self.hidden.discard(event.message.id)
        self.resume(event.message)

    def finished(self, event: Event) -> None:
        """Free before the browser hears of it: a message sent at once is taken, not refused as "wait". Its body is
        sent whole only when the one shown is not the start of it."""
        answer = event.message
        self.answering = False
        self.hidden.discard(answer.id)
        self.rejoining.discard(answer.id)
        left = self.left()
        try:
            tree = Tree(store().messages(self.conversation))
        except StoreUnavailable:  # the answer as it ended is shown all the same, and why it is not kept
            tree = Tree([answer])
        shown = tree.shows(self.shown_last, answer.id)  # not when this tab went to another branch
        last = answer if shown else tree.chosen(self.shown_last)[-1]
        rest = None
        if shown:
            records = answer.meta.get("tool_calls", [])
            pieces = tool_call_places.finished(answer.html, records)[1]
            rest = self.body.rest(answer.id, pieces, answer.meta.get("reasoning", ""))
        self.body = ShownBody()
        self.send(self.fragments.finished(answer, shown, last, tree, left, rest))

    def switch(self, tree: Tree, leaf: str, running: Message | None) -> None:
        """Show the branch that ends at `leaf`; an answer being written (`running`) goes on after it is shown,
        whole if it is on that branch, else unseen until it ends."""
        with self.lock:
            self.shown_last = leaf
            self.body = ShownBody()  # the branch is drawn anew: the answer's body, if shown, as saved
            if running is not None and tree.shows(leaf, running.id):  # saved part shown; then all, live
                self.rejoining.add(running.id)
                self.hidden.discard(running.id)
            elif running is not None:
                self.hidden.add(running.id)
            self.send(self.fragments.switched(tree.path_to(leaf), tree, busy=running is not None))

    def caught_up(self, answer: Message, said: str) -> None:
        """Show a followed answer as saved so far (`said`: its text without the reasoning), unless this tab shows
        another branch."""
        with self.lock:
            self.rejoining.discard(answer.id)
            if answer.id not in self.hidden:
                self.resume(answer, said)

    def send_followed(self, answer: Message, parts: Iterable[tuple[bool, str]]) -> bool:
        """Send what was read of a followed answer (its reasoning, its text, and its tool calls at their places in
        it, as its meta says); False once the socket closed."""
        parts = list(parts)  # read all the same: the reasoning router keeps its place
        with self.lock:
            if answer.id in self.hidden or answer.id in self.rejoining:
                return True
            alive = True
            for thinking, text in parts:
                if thinking:
                    alive = self.send_reasoning(answer.id, text) and alive
                    continue
                for piece in self.cut_at_calls(answer, text):
                    alive = self.show_calls(answer) and alive
                    alive = self.send_text(answer.id, piece) and alive
            return self.show_calls(answer) and alive

    def cut_at_calls(self, answer: Message, text: str) -> list[str]:
        """The answer's next `text` cut where the calls not shown yet were made."""
        waiting = tool_call_places.placed(answer.meta.get("tool_calls", []))[len(self.calls_shown) :]
        places = {record["at"] - self.said_length for _, record in waiting}
        bounds = [0, *sorted(place for place in places if 0 < place < len(text)), len(text)]
        return [text[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]

    def show_calls(self, answer: Message) -> bool:
        """Show each tool call of the answer made where its text shown ends (or before) at its place, and each
        shown that changed (it ended) anew; False once the socket closed."""
        alive = True
        for number, (index, record) in enumerate(tool_call_places.placed(answer.meta.get("tool_calls", []))):
            if number < len(self.calls_shown):
                if self.calls_shown[number] != record["status"]:
                    self.calls_shown[number] = record["status"]
                    self.body.change_call(number, record)
                    alive = self.send(self.fragments.changed_call(answer, index)) and alive
            elif record["at"] <= self.said_length:
                self.calls_shown.append(record["status"])
                before = self.live.end()
                self.body.add(before)
                self.body.add_call(record)
                alive = self.send(self.fragments.placed_call(answer, index, before)) and alive
                self.live = LiveMarkdown()  # the text that follows starts anew after the call
            else:
                break  # made after text not shown yet
        return alive

    def resume(self, answer: Message, said: str | None = None) -> None:
        """Show the answer whole as it is now (`said`: its text without the reasoning, when known already), with
        its tool calls; what follows adds to it."""
        thought, text = reasoning.split(answer.content)
        said = text if said is None else said
        records = answer.meta.get("tool_calls", [])
        unplaced, pieces, rest = tool_call_places.live(said, records)
        self.live = LiveMarkdown()
        opening = self.live.feed(rest)
        self.said_length = len(said)
        self.calls_shown = [record["status"] for _, record in tool_call_places.placed(records)]
        self.body = ShownBody(answer.id)
        self.body.add_reasoning(thought)
        for html, calls in pieces:
            self.body.add(html)
            for _, record in calls:
                self.body.add_call(record)
        self.body.add(opening.done)
        body = (unplaced, pieces, opening.done, opening.open or Markup())
        self.send(self.fragments.resumed(answer, body))

    def send_text(self, message_id: str, text: str) -> bool:
        """Send more of the answer's text, as markdown: one message for the text of one flush."""
        self.said_length += len(text)
        update = self.live.feed(text)
        self.body.add(update.done)
        fragment = self.fragments.text(message_id, update)
        return self.send(fragment) if fragment else True

    def send_reasoning(self, message_id: str, text: str) -> bool:
        """Send more of the answer's reasoning, as text."""
        self.body.add_reasoning(text)
        return self.send(self.fragments.reasoning(message_id, text))

    def notice(self, text: str) -> None:
        self.send(self.fragments.notice(text))

    def send(self, html: str) -> bool:
        """Send a fragment; False when the socket has closed (fine: the answer is saved all the same)."""
        with self.lock:
            try:
                self.ws.send(html)
                return True
            except (ConnectionClosed, OSError):
                return False
