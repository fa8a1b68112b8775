"""Blueprint "chat": the WebSocket of one conversation and its message protocol.

The browser (htmx ws-send) sends JSON: {"action": "send", "message": "...", "after": "<the last message the
tab shows>"}, "edit", "regenerate", "continue", "switch" (to another branch) or "stop". The server sends HTML
fragments that htmx swaps out of band.
The origin and the owner are checked before the socket is accepted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, g, render_template, request, session, url_for
from markupsafe import Markup
from simple_websocket import ConnectionClosed

from chatbot.chat import accounts, actions, limits, picker, reasoning
from chatbot.chat.actions import Refused, Visitor
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind
from chatbot.chat.live_markdown import LiveMarkdown, Update
from chatbot.chat.running import WAIT, is_abandoned, running_answer, settle_abandoned
from chatbot.services.thinking import TagSplitter
from chatbot.services.unicode_text import valid_data
from chatbot.stores.conversations import Conversation, Message
from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import store
from chatbot.web.extensions import sock
from chatbot.web.open_sockets import OpenSockets
from chatbot.web.security import owner_id

bp = Blueprint("chat", __name__)
log = logging.getLogger(__name__)

# The answer's text, as markdown rendered while it streams (chatbot/chat/live_markdown.py): the complete blocks are
# appended, the open block is replaced, or plain text added at its end.
DONE = Markup('<div hx-swap-oob="beforeend:#done-{}">{}</div>')
OPEN = Markup('<div id="open-{}" hx-swap-oob="innerHTML">{}</div>')
TAIL = Markup('<span hx-swap-oob="beforeend:#open-{} .live-tail">{}</span>')
REASONING = Markup('<span hx-swap-oob="beforeend:#reasoning-{}">{}</span>')
REASONED = Markup('<summary id="reasoning-summary-{}" hx-swap-oob="true">{}</summary>')
FOLLOW_SECONDS = 0.25  # how often a following tab looks for more of the answer
EXPIRED = (
    "This chat has expired (no activity for a long time) or was deleted in another tab, so nothing was sent. "
    "Your message is still in the box: press New chat and send it there."
)
OPEN_SOCKETS = OpenSockets()  # this worker's
# Close codes htmx does not reconnect on (chat.js does, after IDLE_CLOSE).
IDLE_CLOSE, REFUSED_CLOSE, SIGNED_OUT_CLOSE = 4000, 4001, 4003
ACCOUNT_CHECK_SECONDS = 1.0  # how often an open socket looks whether its account's session has ended
SIGNED_OUT = "You were signed out (here, everywhere, or by an admin), so this chat closed. Reload the page."
IDLE = (
    "This tab was left alone for {} minutes, so its connection was closed to make room for others. "
    "It connects again as soon as you come back to it."
)
ANSWERING = ("send", "edit", "regenerate", "continue")  # the actions that ask the backend for an answer
WAITING = Markup('<p id="wait-{}" class="waiting" hx-swap-oob="true">{}</p>')


@bp.before_request
def check_origin_and_owner() -> None:
    """Refuse cross-site pages (403) and other sessions' conversations (404) before the handshake."""
    origin = (request.headers.get("Origin") or "").rstrip("/")
    if origin not in allowed_origins():
        log.warning("refused a chat socket from origin %r", origin)
        abort(403)
    owner = owner_id(create=False)
    conversation = store().get_conversation(owner, request.view_args["conversation_id"]) if owner else None
    if conversation is None:
        abort(404)
    g.conversation = conversation


def allowed_origins() -> set[str]:
    """The app's own origin as the browser sees it, and any configured in ALLOWED_ORIGINS."""
    scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)
    return {f"{scheme}://{request.host}", *current_app.config["ALLOWED_ORIGINS"]}


def socket_path(conversation_id: str) -> str:
    """The socket's path, for ws-connect (url_for builds a ws:// URL that ignores a proxy's https)."""
    return urlsplit(url_for("chat.conversation_socket", conversation_id=conversation_id)).path


@bp.app_context_processor
def socket_path_in_templates() -> dict:
    return {"socket_path": socket_path}


@sock.route("/c/<conversation_id>/socket", bp=bp)
def conversation_socket(ws, conversation_id: str) -> None:  # type: ignore[no-untyped-def]
    app = current_app._get_current_object()
    with OPEN_SOCKETS.held(app.config, g.conversation.owner, request.remote_addr) as refused:
        if refused:
            ws.send(render_template("chat/_notice.html", text=refused, oob=True))
            ws.close(REFUSED_CLOSE, "too many open")
            return
        account, session_id = g.get("account"), session.get("sid", "")
        ChatSocket(ws, app, g.conversation, request.remote_addr, account, session_id).serve()


class ChatSocket:
    """One open socket: reads actions, runs a reply in its own thread, sends fragments."""

    def __init__(  # type: ignore[no-untyped-def]
        self,
        ws,
        app: Flask,
        conversation: Conversation,
        address: str | None,
        account: accounts.Account | None = None,
        session_id: str = "",
    ) -> None:
        self.ws = ws
        self.app = app
        self.conversation = conversation
        self.address = address  # the browser's, for the limits per address
        self.account = account  # who is signed in on this socket (None: nobody signs in)
        self.session_id = session_id  # the session it was opened in (ended by a sign-out)
        self.send_lock = threading.RLock()  # held while a fragment is chosen and sent: fragments go in order
        self.answering = False  # an answer is being sent on this socket (written here, or followed)
        self.cancel = threading.Event()
        self.shown_last = conversation.leaf_id  # the last message of the branch this tab shows
        self.hidden: set[str] = set()  # answers being written whose text this tab does not show (another branch)
        self.rejoining: set[str] = set()  # answers shown again by a switch: what comes next is all of them
        self.live = LiveMarkdown()  # the answer being sent, as it is shown
        self.ended = threading.Event()  # set once this socket serves no more (the browser went, or it was closed)

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
        self.follow_running_answer()
        idle_minutes = self.app.config["SOCKET_IDLE_MINUTES"]
        quiet_since = time.monotonic()
        while True:
            # With an account, waking up often lets this loop end soon after the watch closed the socket.
            raw = self.ws.receive(timeout=ACCOUNT_CHECK_SECONDS if self.account else idle_minutes * 60)
            if raw is not None and self.account and not self.still_signed_in():
                self.close_signed_out()
                return
            if raw is None:
                if self.answering:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= idle_minutes * 60:
                    self.notice(IDLE.format(f"{idle_minutes:g}"))
                    self.ws.close(IDLE_CLOSE, "idle")
                    return
                continue
            quiet_since = time.monotonic()
            try:
                self.handle(raw)
            except StoreUnavailable as error:
                self.notice(str(error))

    def running_answer(self, messages: list[Message] | None = None) -> Message | None:
        """The conversation's answer being written now by any tab, worker or host, on any branch, if any (among
        `messages` when they were just read)."""
        answer = running_answer(messages if messages is not None else store().messages(self.conversation))
        if answer is not None and settle_abandoned(store(), answer):
            self.on_event(Event("finished", answer))
            return None
        return answer

    def follow_running_answer(self) -> None:
        """A reloaded tab, or one on another worker: show the answer so far and keep streaming it (only when
        it is on the branch the tab shows; otherwise the tab hears when it ends)."""
        messages = store().messages(self.conversation)
        answer = self.running_answer(messages)
        if answer is not None:
            if not Tree(messages).shows(self.shown_last, answer.id):
                self.hidden.add(answer.id)
            self.start_following(answer)

    def start_following(self, answer: Message) -> None:
        self.answering = True
        threading.Thread(target=self.follow, args=(answer,), daemon=True, name="follow").start()

    def follow(self, answer: Message) -> None:
        """Send the answer as it grows (only the new part is read each time), until it ends or this socket closes."""
        with self.app.app_context():
            try:
                self.follow_to_the_end(answer)
            except StoreUnavailable as error:
                self.answering = False
                self.notice(str(error))

    def follow_to_the_end(self, answer: Message) -> None:
        """Read only the new part each time, and send it; the finished answer replaces it all. Shown again by a
        switch, the answer is read whole once more."""
        seen, router = self.catch_up(answer)
        alive = True
        while alive:
            time.sleep(FOLLOW_SECONDS)
            rejoining = answer.id in self.rejoining
            new = store().read_message(self.conversation, answer.id, 0 if rejoining else seen)
            if new is None:  # deleted meanwhile
                self.answering = False
                return
            if new.status == "streaming" and not is_abandoned(new):
                if rejoining:
                    seen, router = self.catch_up(new)
                else:
                    alive = self.send_followed(new.id, router.feed(new.content))
                    seen += len(new.content)
                continue
            final = store().read_message(self.conversation, answer.id)
            if final is not None:  # the finished fragment replaces the whole answer
                settle_abandoned(store(), final)
                self.on_event(Event("finished", final))
            return

    def catch_up(self, answer: Message) -> tuple[int, TagSplitter]:
        """Show the answer as saved so far, unless this tab shows another branch; where to read on from, and
        how to tell its reasoning from its text from there."""
        router = reasoning.router()
        said = "".join(text for thinking, text in router.feed(answer.content) if not thinking)
        with self.send_lock:
            self.rejoining.discard(answer.id)
            if answer.id not in self.hidden:
                self.resume(answer, said)
        return len(answer.content), router

    def send_followed(self, message_id: str, parts: Iterable[tuple[bool, str]]) -> bool:
        """Send what was read of a followed answer (its reasoning and its text); False once the socket closed."""
        parts = list(parts)  # read all the same: the reasoning router keeps its place
        with self.send_lock:
            if message_id in self.hidden or message_id in self.rejoining:
                return True
            alive = True
            for thinking, text in parts:
                sent = self.send(REASONING.format(message_id, text)) if thinking else self.send_answer(message_id, text)
                alive = sent and alive
            return alive

    def resume(self, answer: Message, said: str | None = None) -> None:
        """Show the answer whole as it is now (`said`: its text without the reasoning, when known already); what
        follows adds to it."""
        self.live = LiveMarkdown(reasoning.split(answer.content)[1] if said is None else said)
        self.send(render_template("chat/_resumed.html", answer=answer))

    def handle(self, raw: str | bytes) -> None:
        try:
            data = valid_data(json.loads(raw))
            action = data.get("action") or "send"
        except (ValueError, AttributeError, RecursionError):
            self.notice("The chat could not read that message. Reload the page and try again.")
            return
        if data.get("after"):  # what the tab shows: its own branch, whatever other tabs chose
            self.shown_last = str(data["after"])
        if action != "stop" and not self.refresh_conversation():
            self.notice(EXPIRED)
        elif action == "switch":
            self.switch_branch(str(data.get("message_id") or ""))
        elif action == "stop":
            self.cancel.set()
            if (settled := actions.stop(store(), self.conversation)) is not None:  # its writer had gone away
                self.on_event(Event(Kind.FINISHED, settled))
        elif action not in ANSWERING:
            self.notice(f"Unknown action {action!r}. Reload the page and try again.")
        elif self.answering:  # written or followed here
            self.notice(WAIT)
        else:
            try:
                self.start(self.ask(action, data))
            except Refused as refused:
                self.notice(str(refused))

    def ask(self, action: str, data: dict) -> actions.Reply:
        """The answer that `action` (one of ANSWERING) asks for; Refused says why not."""
        visitor = Visitor(self.visible_config(), self.account_limits(), self.address)
        text, after = str(data.get("message") or "").strip(), str(data.get("after") or "")
        if action == "send":
            model, files = str(data.get("model") or ""), named_files(data.get("attachment"))
            return actions.send(store(), self.conversation, visitor, text, after, model, files)
        if action == "edit":
            return actions.edit(store(), self.conversation, visitor, str(data.get("message_id") or ""), text)
        if action == "regenerate":
            return actions.regenerate(store(), self.conversation, visitor, after)
        return actions.continue_answer(store(), self.conversation, visitor, after)

    def watch_account(self) -> None:
        """Close the socket once its account's session has ended (signed out, here or everywhere, a password reset,
        disabled), within ACCOUNT_CHECK_SECONDS, however busy or talkative it is."""
        while not self.ended.wait(ACCOUNT_CHECK_SECONDS):
            if not self.still_signed_in():
                self.close_signed_out()
                return

    def close_signed_out(self) -> None:
        """Stop this socket's answer, say why, and close it (once, whoever sees it first)."""
        with self.send_lock:
            if self.ended.is_set():
                return
            self.ended.set()
            self.cancel.set()
            self.notice(SIGNED_OUT)
            with contextlib.suppress(ConnectionClosed):
                self.ws.close(SIGNED_OUT_CLOSE, "signed out")

    def still_signed_in(self) -> bool:
        """Whether this socket's account is still active and its session has not ended (any worker may end it)."""
        try:
            with self.app.app_context():
                current = accounts.load(store(), self.account.username)
        except StoreUnavailable:  # cannot tell now: nobody is signed out by a blip of the store
            return True
        if current is None or current.status != "active":
            return False
        self.account = current  # what the admin changed since (the models it may pick) holds from now on
        return self.app.config["AUTH"] == "header" or self.session_id in current.sessions

    def visible_config(self) -> dict:
        """The configuration as this socket's account sees it (only the models it may pick)."""
        return picker.for_account(self.app.config, self.account)

    def account_limits(self) -> dict | None:
        """What the admin set for accounts now (None: nobody signs in)."""
        return accounts.site_settings(store(), self.app.config) if self.account else None

    def refresh_conversation(self) -> bool:
        """Read the conversation again (another tab may have renamed it or changed its settings);
        False when it has expired or was deleted meanwhile."""
        current = store().get_conversation(self.conversation.owner, self.conversation.id)
        if current is not None:
            self.conversation = current
        return current is not None

    def switch_branch(self, message_id: str) -> None:
        """Show the branch through `message_id` (one of a message's alternatives) here and on reload; an answer
        being written on the branch left keeps being written, and this tab hears when it ends."""
        try:
            tree, self.shown_last = actions.switch_branch(store(), self.conversation, message_id)
        except Refused as refused:
            self.notice(str(refused))
            return
        branch = tree.path_to(self.shown_last)
        running = running_answer(tree.messages)
        with self.send_lock:  # an answer being written goes on after the branch is shown, not before
            if running is not None and tree.shows(self.shown_last, running.id):  # saved part shown; then all, live
                self.rejoining.add(running.id)
                self.hidden.discard(running.id)
            elif running is not None:
                self.hidden.add(running.id)
            self.send(render_template("chat/_switched.html", messages=branch, tree=tree, busy=running is not None))
        if running is not None and not self.answering:  # written by a tab that started it after this one opened
            self.start_following(running)

    def start(self, reply: actions.Reply) -> None:
        """Write the answer in its own thread, so that this socket can still hear Stop."""
        self.cancel = threading.Event()
        self.answering = True
        threading.Thread(target=self.run, args=(reply, self.cancel), daemon=True, name="reply").start()

    def run(self, reply: actions.Reply, cancel: threading.Event) -> None:
        with self.app.app_context():
            try:
                reply.write(self.on_event, cancel)
            except Refused as refused:  # another tab, worker or host started one first; or nothing to answer
                self.answering = False
                self.notice(str(refused))
            except StoreUnavailable as error:  # nothing was saved, so nothing was sent: the message stays in the box
                self.answering = False
                self.notice(str(error))
            except Exception:
                log.exception("a reply failed before it started")
                self.answering = False
                self.notice("The chat failed to start the answer. Reload the page to see what was saved, then retry.")

    def on_event(self, event: Event) -> None:
        with self.send_lock:  # decided and sent in one go: a switch of branch comes before or after, not between
            self.send_event(event)

    def send_event(self, event: Event) -> None:
        answer_id = event.message.id
        if event.kind in ("delta", "reasoning", "reasoned", "waiting") and answer_id in self.hidden:
            return  # this tab went to another branch while the answer is written: it hears only that it ended
        if answer_id in self.rejoining and event.so_far is not None:  # shown again: all of it so far, this included
            self.rejoining.discard(answer_id)
            self.resume(replace(event.message, content=event.so_far()))
        elif event.kind == "delta":
            self.send_answer(event.message.id, event.text)
        elif event.kind == "reasoning":
            self.send(REASONING.format(event.message.id, event.text))
        elif event.kind == "reasoned":
            self.send(REASONED.format(event.message.id, event.text))
        elif event.kind == "waiting":
            self.send(WAITING.format(event.message.id, event.text))
        elif event.kind == "titled":
            self.send(render_template("chat/_titled.html", conversation=self.conversation))
        elif event.kind == "resumed":
            self.shown_last = event.message.id
            self.hidden.discard(event.message.id)
            self.resume(event.message)
        elif event.kind == "started":
            self.shown_last = event.message.id
            self.hidden.discard(event.message.id)
            self.live = LiveMarkdown()
            tree = event.tree  # an edit or a regeneration: the branch, shown anew
            self.send(
                render_template(
                    "chat/_started.html",
                    user=event.user_message,
                    answer=event.message,
                    messages=tree.path_to(event.message.id) if tree else None,
                    tree=tree,
                    conversation=self.conversation,
                )
            )
        else:  # free before the browser hears of it: a message sent at once is taken, not refused as "wait"
            self.answering = False
            self.hidden.discard(answer_id)
            self.rejoining.discard(answer_id)
            own_limits = self.account_limits()
            left = limits.left(store(), self.conversation.owner, own_limits) if own_limits else ""
            try:
                tree = Tree(store().messages(self.conversation))
            except StoreUnavailable:  # the answer as it ended is shown all the same, and why it is not kept
                tree = Tree([event.message])
            shown = tree.shows(self.shown_last, event.message.id)  # not when this tab went to another branch
            last = event.message if shown else tree.chosen(self.shown_last)[-1]
            self.send(
                render_template(
                    "chat/_finished.html", answer=event.message, shown=shown, last=last, tree=tree, left=left
                )
            )

    def send_answer(self, message_id: str, text: str) -> bool:
        """Send more of the answer's text, as markdown: one message for the text of one flush."""
        fragment = answer_fragment(message_id, self.live.feed(text))
        return self.send(fragment) if fragment else True

    def notice(self, text: str) -> None:
        with self.app.app_context():
            self.send(render_template("chat/_notice.html", text=text, oob=True))

    def send(self, html: str) -> bool:
        """Send a fragment; False when the socket has closed (fine: the answer is saved all the same)."""
        with self.send_lock:
            try:
                self.ws.send(html)
                return True
            except (ConnectionClosed, OSError):
                return False


def answer_fragment(message_id: str, update: Update) -> str:
    """What the browser swaps in for one update of the answer's text."""
    if update.open is None:
        return TAIL.format(message_id, update.tail) if update.tail else ""
    return (DONE.format(message_id, update.done) if update.done else "") + OPEN.format(message_id, update.open)


def named_files(value: object) -> list[str]:
    """The file ids a sent form names (htmx sends one as a string, several as a list)."""
    given = value if isinstance(value, list) else [value]
    return [item for item in given if isinstance(item, str) and item]
