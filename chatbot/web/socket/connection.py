"""One open chat socket: the loop that reads the browser's actions and does them, the thread that writes an
answer (so that the loop still hears Stop), and the watch that closes it when its account's session ends."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from flask import Flask
from simple_websocket import ConnectionClosed

from chatbot.chat import accounts, actions, limits, picker
from chatbot.chat.actions import Refused, Visitor
from chatbot.chat.events import Event, Kind
from chatbot.chat.running import WAIT, running_answer
from chatbot.services.unicode_text import valid_data
from chatbot.stores.conversations import Conversation
from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import runs_the_chat, store
from chatbot.web.socket.follower import Follower
from chatbot.web.socket.fragments import Fragments
from chatbot.web.socket.view import Sends, TabView

log = logging.getLogger(__name__)

EXPIRED = (
    "This chat has expired (no activity for a long time) or was deleted in another tab, so nothing was sent. "
    "Your message is still in the box: press New chat and send it there."
)
# Close codes htmx does not reconnect on (chat.js does: after IDLE_CLOSE when the person is back, after
# FULL_CLOSE by itself in a few seconds).
IDLE_CLOSE, REFUSED_CLOSE, FULL_CLOSE, SIGNED_OUT_CLOSE = 4000, 4001, 4002, 4003
ACCOUNT_CHECK_SECONDS = 1.0  # how often an open socket looks whether its account's session has ended
CHANGES_SECONDS = (
    ACCOUNT_CHECK_SECONDS  # how often an idle socket looks whether another tab changed the chat (its model, its title)
)
SIGNED_OUT = "You were signed out (here, everywhere, or by an admin), so this chat closed. Reload the page."
IDLE = (
    "This tab was left alone for {} minutes, so its connection was closed to make room for others. "
    "It connects again as soon as you come back to it."
)
ANSWERING = ("send", "edit", "regenerate", "continue")  # the actions that ask the backend for an answer


class WebSocket(Sends, Protocol):
    """What the chat socket needs of a WebSocket (simple_websocket's server side, or a fake in tests)."""

    def receive(self, timeout: float | None = None) -> str | bytes | None: ...

    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


class ChatSocket:
    """One open socket (`ws`: anything with send, receive and close) of a conversation, in a browser at `address`,
    signed in as `account` in session `session_id` (None and "": nobody signs in)."""

    def __init__(
        self,
        ws: WebSocket,
        app: Flask,
        conversation: Conversation,
        address: str | None,
        account: accounts.Account | None = None,
        session_id: str = "",
    ) -> None:
        self.ws = ws
        self.app = app
        self.address = address  # the browser's, for the limits per address
        self.account = account
        self.session_id = session_id  # the session it was opened in (ended by a sign-out)
        self.cancel = threading.Event()  # set by Stop for the answer written here
        self.ended = threading.Event()  # set once this socket serves no more (the browser went, or it was closed)
        fragments = Fragments(app, runs_the_chat(account, app.config))
        self.view = TabView(ws, fragments, conversation, self.left)
        self.follower = Follower(app, self.view)

    def serve(self) -> None:
        """Read actions until the browser goes, until the socket has been idle (no action, no answer) too long,
        or until its account's session ends: looked at before each action, and every ACCOUNT_CHECK_SECONDS
        whatever the socket is doing."""
        if self.account:
            threading.Thread(target=self.watch_account, daemon=True, name="account").start()
        try:
            self.read_actions()
        finally:
            self.ended.set()

    def read_actions(self) -> None:
        self.follower.follow_running_answer()
        idle_minutes = self.app.config["SOCKET_IDLE_MINUTES"]
        quiet_since = time.monotonic()
        while True:
            # Waking up often shows another tab's changes, and ends this loop soon after the watch closed the socket.
            raw = self.ws.receive(timeout=CHANGES_SECONDS)
            if raw is not None and self.account and not self.still_signed_in():
                self.close_signed_out()
                return
            if raw is None:
                if self.view.answering:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= idle_minutes * 60:
                    self.view.notice(IDLE.format(f"{idle_minutes:g}"))
                    self.ws.close(IDLE_CLOSE, "idle")
                    return
                else:
                    self.show_changes()
                continue
            quiet_since = time.monotonic()
            try:
                self.handle(raw)
            except StoreUnavailable as error:
                self.view.notice(str(error))

    def handle(self, raw: str | bytes) -> None:
        """Do one action the browser sent; what cannot be done is said in a notice."""
        try:
            data = valid_data(json.loads(raw))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            action = data.get("action") or "send"
        except (ValueError, RecursionError):
            self.view.notice("The chat could not read that message. Reload the page and try again.")
            return
        if data.get("after"):  # what the tab shows: its own branch, whatever other tabs chose
            self.view.shown_last = str(data["after"])
        try:
            if action != "stop" and not self.refresh_conversation():
                self.view.notice(EXPIRED)
            elif action == "switch":
                self.switch_branch(str(data.get("message_id") or ""))
            elif action == "stop":
                self.stop()
            elif action == "approve":
                actions.answer_tool_call(
                    store(),
                    self.view.conversation,
                    str(data.get("message_id") or ""),
                    str(data.get("card") or ""),
                    str(data.get("decision") or ""),
                )
            elif action == "pick":
                with self.showing_the_model():
                    actions.pick(store(), self.view.conversation, self.visitor(), str(data.get("model") or "").strip())
            elif action not in ANSWERING:
                self.view.notice(f"Unknown action {action!r}. Reload the page and try again.")
            elif self.view.answering:  # written or followed here
                self.view.notice(WAIT)
            else:
                with self.showing_the_model():  # one sent with another model picked
                    reply = self.ask(action, data)
                self.start(reply)
        except Refused as refused:
            self.view.notice(str(refused))

    @contextlib.contextmanager
    def showing_the_model(self) -> Iterator[None]:
        """Show the header's model anew when the block picked another (other tabs see it within CHANGES_SECONDS)."""
        before = self.view.conversation.settings.get("model")
        yield
        if self.view.conversation.settings.get("model") != before:
            self.view.send(self.view.fragments.model(self.view.conversation, self.visible_config()))

    def ask(self, action: str, data: dict) -> actions.Reply:
        """The answer that `action` (one of ANSWERING) asks for; Refused says why not."""
        visitor = self.visitor()
        conversation = self.view.conversation
        text, after = str(data.get("message") or "").strip(), str(data.get("after") or "")
        model = str(data.get("model") or "").strip()
        if action == "send":
            files = named_files(data.get("attachment"))
            return actions.send(store(), conversation, visitor, text, after, model, files)
        if action == "edit":
            return actions.edit(store(), conversation, visitor, str(data.get("message_id") or ""), text, model)
        if action == "regenerate":
            return actions.regenerate(store(), conversation, visitor, after, model)
        return actions.continue_answer(store(), conversation, visitor, after)

    def stop(self) -> None:
        """Stop the answer written here, or by another tab, worker or host."""
        self.cancel.set()
        if (settled := actions.stop(store(), self.view.conversation)) is not None:  # its writer had gone away
            self.view.on_event(Event(Kind.FINISHED, settled))

    def switch_branch(self, message_id: str) -> None:
        """Show the branch through `message_id` (one of a message's alternatives) here and on reload; an answer
        being written on the branch left keeps being written, and this tab hears when it ends."""
        tree, leaf = actions.switch_branch(store(), self.view.conversation, message_id)
        running = running_answer(tree.messages)
        self.view.switch(tree, leaf, running)
        if running is not None and not self.view.answering:  # written by a tab that started it after this one opened
            self.follower.start(running)

    def start(self, reply: actions.Reply) -> None:
        """Write the answer in its own thread, so that this socket can still hear Stop."""
        self.cancel = threading.Event()
        self.view.answering = True
        threading.Thread(target=self.run, args=(reply, self.cancel), daemon=True, name="reply").start()

    def run(self, reply: actions.Reply, cancel: threading.Event) -> None:
        with self.app.app_context():
            try:
                reply.write(self.view.on_event, cancel)
            except Refused as refused:  # another tab, worker or host started one first; or nothing to answer
                self.view.answering = False
                self.view.notice(str(refused))
            except StoreUnavailable as error:  # nothing was saved, so nothing was sent: the message stays in the box
                self.view.answering = False
                self.view.notice(str(error))
            except Exception:
                log.exception("a reply failed before it started")
                self.view.answering = False
                self.view.notice(
                    "The chat failed to start the answer. Reload the page to see what was saved, then retry."
                )

    def watch_account(self) -> None:
        """Close the socket once its account's session has ended (signed out, here or everywhere, a password reset,
        disabled), within ACCOUNT_CHECK_SECONDS, however busy or talkative it is."""
        while not self.ended.wait(ACCOUNT_CHECK_SECONDS):
            if not self.still_signed_in():
                self.close_signed_out()
                return

    def close_signed_out(self) -> None:
        """Stop this socket's answer, say why, and close it (once, whoever sees it first)."""
        with self.view.lock:
            if self.ended.is_set():
                return
            self.ended.set()
            self.cancel.set()
            self.view.notice(SIGNED_OUT)
            with contextlib.suppress(ConnectionClosed):
                self.ws.close(SIGNED_OUT_CLOSE, "signed out")

    def still_signed_in(self) -> bool:
        """Whether this socket's account is still active and its session has not ended (any worker may end it)."""
        if self.account is None:  # nobody signs in: nobody is signed out
            return True
        try:
            with self.app.app_context():
                current = accounts.load(store(), self.account.username)
        except StoreUnavailable:  # cannot tell now: nobody is signed out by a blip of the store
            return True
        if current is None or current.status != "active":
            return False
        self.account = current  # what the admin changed since (the models it may pick) holds from now on
        return self.app.config["AUTH"] == "header" or self.session_id in current.sessions

    def visitor(self) -> Visitor:
        return Visitor(self.visible_config(), self.account_limits(), self.address)

    def visible_config(self) -> dict:
        """The configuration as this socket's account sees it (only the models it may pick)."""
        return picker.for_account(self.app.config, self.account)

    def account_limits(self) -> dict | None:
        """What the admin set for accounts now (None: nobody signs in)."""
        return accounts.site_settings(store(), self.app.config) if self.account else None

    def left(self) -> str:
        """What the owner's account may still use today, in words ("" when nobody signs in)."""
        own_limits = self.account_limits()
        return limits.left(store(), self.view.conversation.owner, own_limits) if own_limits else ""

    def refresh_conversation(self) -> bool:
        """Read the conversation again (another tab may have renamed it or changed its settings), and show what
        changed; False when it has expired or was deleted meanwhile."""
        shown = self.view.conversation
        current = store().get_conversation(shown.owner, shown.id)
        if current is None:
            return False
        self.view.conversation = current
        if current.settings != shown.settings:
            self.view.send(self.view.fragments.model(current, self.visible_config()))
        if current.title != shown.title:
            self.view.send(self.view.fragments.titled(current))
        return True

    def show_changes(self) -> None:
        """Show what another tab changed meanwhile (the model picked, the settings, the title)."""
        with contextlib.suppress(StoreUnavailable):  # a blip of the store: shown at the next look
            self.refresh_conversation()


def named_files(value: object) -> list[str]:
    """The file ids a sent form names (htmx sends one as a string, several as a list)."""
    given = value if isinstance(value, list) else [value]
    return [item for item in given if isinstance(item, str) and item]
