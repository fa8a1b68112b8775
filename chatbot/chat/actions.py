"""The chat's actions, one path each for the socket and the form posts: send, edit, regenerate, continue, stop,
answer a tool call's card, pick a model, switch branch and new chat from here.

Each takes plain arguments (the store, the conversation, the `Visitor` who acts) and checks, then picks the model,
works out the reply's settings once, and hands back a `Reply` that the caller runs (the socket in a thread of its
own, so that it still hears Stop; a form post to the end, or to a tool call's card). What cannot be done raises
`Refused`, with words for the person and a `Refusal` kind that the web side turns into its own response.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from chatbot.chat import answers_at_once, approvals, attachments, defaults, limits, picker, transfer
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind, Listener
from chatbot.chat.message_checks import can_edit, files_to_send, message_problem
from chatbot.chat.replies import run_continuation, run_regeneration, run_reply
from chatbot.chat.reply_settings import ReplySettings, pick_model, settings_for_conversation
from chatbot.chat.running import WAIT, AnswerRunning, running_answer, settle_abandoned
from chatbot.stores.conversations import Conversation, Message, Store

GONE = "That message is not in this chat (it may have expired with it). Reload the page."
NOT_EDITABLE = "That message can no longer be edited. Reload the page."
NO_QUESTION = "There is no question to answer again yet."
NOTHING_TO_CONTINUE = "There is no answer cut off at the length limit to continue."
ANSWERED = "That tool call was answered already (in another tab, or it waited too long): the chat shows how it went."


class Refusal(enum.StrEnum):
    """Why an action was refused: what was sent (INVALID), what it names is not there (GONE), the chat is not in a
    state for it (CONFLICT), or a limit was reached (LIMITED)."""

    INVALID = "invalid"
    GONE = "gone"
    CONFLICT = "conflict"
    LIMITED = "limited"


class Refused(Exception):
    """An action that is not done, in words for the person; `files` (as stored) stay attached to their draft."""

    def __init__(self, words: str, kind: Refusal, files: list[dict] | None = None) -> None:
        super().__init__(words)
        self.kind = kind
        self.files = files or []


@dataclass(frozen=True)
class Visitor:
    """Who acts, and what they may do: the configuration as their account sees it (only the models it may pick),
    the limits the admin set for accounts (None: nobody signs in), and their network address."""

    config: dict
    account_limits: dict | None = None
    address: str | None = None


Uploads = Callable[[], list[attachments.Attachment]]  # files sent with a form: read, checked and counted when called


@dataclass
class Reply:
    """An answer let through, its settings worked out: `write` runs it to its end in the caller's thread."""

    writes: Callable[[Listener, threading.Event | None], Message | None]  # one of chat/replies.py's run_*
    held: answers_at_once.Held  # the slot of the person's answers at once, let go when the writer is done
    nothing: str = ""  # said when there turns out to be nothing to answer
    files: list[dict] = field(default_factory=list)  # attached to the message, as stored

    def write(self, listener: Listener, cancel: threading.Event | None = None) -> Message:
        """The stored answer, whatever happened to it; Refused when another answer started first, or when there
        is nothing to answer."""

        def heard(event: Event) -> None:
            if event.kind is Kind.STARTED:
                self.held.name(event.message)
            listener(event)

        try:
            answer = self.writes(heard, cancel)
        except AnswerRunning:  # another tab, worker or host started one first
            raise Refused(WAIT, Refusal.CONFLICT, self.files) from None
        finally:
            self.held.release()
        if answer is None:
            raise Refused(self.nothing, Refusal.CONFLICT)
        return answer

    def write_until_asked(self) -> None:
        """Write the answer in a thread of its own, and return once it is written (titled too) or waits on a tool
        call's card (a page without JavaScript shows it; its answer lets the writer go on). Refused as `write`."""
        paused = threading.Event()
        failed: list[BaseException] = []

        def listen(event: Event) -> None:
            if event.kind is Kind.ASKING and event.message.meta.get("approval"):
                paused.set()

        def run() -> None:
            try:
                self.write(listen)
            except BaseException as error:  # handed over to the waiting thread
                failed.append(error)
            finally:
                paused.set()

        threading.Thread(target=run, daemon=True, name="reply").start()
        paused.wait()
        if failed:
            raise failed[0]


def send(
    store: Store,
    conversation: Conversation,
    visitor: Visitor,
    text: str,
    after: str | None = None,
    model: str | None = None,
    file_ids: list[str] | None = None,
    uploads: Uploads | None = None,
) -> Reply:
    """A new message after `after` (the last message the tab shows) with the model the user picked, this
    conversation's files named by `file_ids`, and the files a form `uploads`."""
    file_ids = file_ids or []
    _check_text(text, visitor, with_files=bool(file_ids) or uploads is not None)
    _check_idle(store, conversation)
    with _picking(store, conversation, visitor, model):
        settings = _settings(conversation, visitor)
        files = _files(store, conversation, visitor, settings, text, file_ids, uploads)
        held = _let_through(store, conversation, visitor, files)
    return Reply(
        lambda listener, cancel: run_reply(store, conversation, text, settings, listener, cancel, after, None, files),
        held,
        files=files,
    )


def edit(
    store: Store, conversation: Conversation, visitor: Visitor, message_id: str, text: str, model: str | None = None
) -> Reply:
    """The edited text of the user's message `message_id`, sent beside it as a new branch (the original stays),
    answered by the model picked now."""
    _check_text(text, visitor)
    if not can_edit(store, conversation, message_id):
        raise Refused(NOT_EDITABLE, Refusal.GONE)
    _check_idle(store, conversation)
    with _picking(store, conversation, visitor, model):
        settings = _settings(conversation, visitor)
        held = _let_through(store, conversation, visitor)
    return Reply(
        lambda listener, cancel: run_reply(store, conversation, text, settings, listener, cancel, replacing=message_id),
        held,
    )


def regenerate(
    store: Store, conversation: Conversation, visitor: Visitor, of: str | None = None, model: str | None = None
) -> Reply:
    """Another answer to the question of the answer `of` (the last one the tab shows), beside it, by the model
    picked now (so that models can be compared on the same question)."""
    _check_idle(store, conversation)
    with _picking(store, conversation, visitor, model):
        settings = _settings(conversation, visitor)
        held = _let_through(store, conversation, visitor)
    return Reply(
        lambda listener, cancel: run_regeneration(store, conversation, settings, listener, cancel, of),
        held,
        NO_QUESTION,
    )


def continue_answer(store: Store, conversation: Conversation, visitor: Visitor, of: str | None = None) -> Reply:
    """More of the answer `of` (the last one the tab shows), which stopped at the length limit."""
    _check_idle(store, conversation)
    settings = _settings(conversation, visitor)
    held = _let_through(store, conversation, visitor)
    return Reply(
        lambda listener, cancel: run_continuation(store, conversation, settings, listener, cancel, of),
        held,
        NOTHING_TO_CONTINUE,
    )


def pick(store: Store, conversation: Conversation, visitor: Visitor, model: str | None) -> None:
    """Answer with the model named `model` from now on (nothing: the one picked before); Refused, with the closest
    names, when it is not one the visitor may pick, before anything is sent."""
    if not model:
        return
    if refused := picker.refusal(visitor.config, model):
        raise Refused(refused, Refusal.INVALID)
    if pick_model(store, conversation, model):
        defaults.used(store, conversation)


def stop(store: Store, conversation: Conversation) -> Message | None:
    """Ask the answer being written, by any tab, worker or host, to stop. Returns an answer whose writer had gone
    away, settled here (interrupted, with what arrived kept), for the caller to show as ended."""
    running = running_answer(store.messages(conversation))
    if running is None:
        return None
    if settle_abandoned(store, running):
        return running
    store.request_stop(running.id)
    return None


def answer_tool_call(store: Store, conversation: Conversation, message_id: str, card_id: str, given: str) -> None:
    """The owner's answer to a tool call's card (chat/approvals.py): the first one, from any tab or host, counts."""
    try:
        approvals.answer(store, conversation, message_id, card_id, given)
    except ValueError:
        raise Refused("A tool call's card takes Run once, Always for this tool, or Deny.", Refusal.INVALID) from None
    except approvals.NotWaiting:
        raise Refused(ANSWERED, Refusal.CONFLICT) from None


def switch_branch(store: Store, conversation: Conversation, message_id: str) -> tuple[Tree, str]:
    """Show the branch through `message_id` (one of a message's alternatives) from now on, on every device: the
    conversation's messages and the last one of that branch."""
    tree = Tree(store.messages(conversation))
    if message_id not in tree.by_id:
        raise Refused(GONE, Refusal.GONE)
    leaf = tree.newest_leaf(message_id)
    store.choose_branch(conversation, leaf)
    return tree, leaf


def new_chat_from_here(store: Store, conversation: Conversation, visitor: Visitor, message_id: str) -> Conversation:
    """A new chat holding a copy of the branch up to `message_id`, with the same model and settings."""
    branch = Tree(store.messages(conversation)).path_to(message_id)
    if not branch:
        raise Refused(GONE, Refusal.GONE)
    owner, config = conversation.owner, visitor.config
    if refused := limits.refusal(store, config, "conversations", owner, visitor.address, visitor.account_limits):
        raise Refused(refused, Refusal.LIMITED)
    files = sum(int(file.get("size") or 0) for message in branch for file in transfer.files_of(message))
    if too_much := limits.keeping_problem(store, owner, config["FILES_KEPT_MB"], files, "start the new chat again"):
        raise Refused(too_much, Refusal.INVALID)
    return transfer.copy_branch(store, conversation, branch)


@contextlib.contextmanager
def _picking(store: Store, conversation: Conversation, visitor: Visitor, model: str | None) -> Iterator[None]:
    """Work out the answer with the model named `model` (nothing: the one picked before), and keep it picked once
    the block let the answer through; refused, before or in the block, the model picked before stays."""
    if not model:
        yield
        return
    if refused := picker.refusal(visitor.config, model):
        raise Refused(refused, Refusal.INVALID)
    previous = conversation.settings.get("model")
    conversation.settings["model"] = model
    try:
        yield
    except Refused:
        if previous is None:
            del conversation.settings["model"]
        else:
            conversation.settings["model"] = previous
        raise
    if model != previous:
        store.update_conversation(conversation)
        defaults.used(store, conversation)


def _check_text(text: str, visitor: Visitor, with_files: bool = False) -> None:
    if problem := message_problem(text, visitor.config["MAX_MESSAGE_CHARS"], with_files):
        raise Refused(problem, Refusal.INVALID)


def _check_idle(store: Store, conversation: Conversation) -> None:
    """Refused while an answer is written (one whose writer went away is settled, and does not count)."""
    running = running_answer(store.messages(conversation))
    if running is not None and not settle_abandoned(store, running):
        raise Refused(WAIT, Refusal.CONFLICT)


def _settings(conversation: Conversation, visitor: Visitor) -> ReplySettings:
    settings = settings_for_conversation(conversation, visitor.config, visitor.account_limits)
    settings.asker = limits.asker(visitor.config, conversation.owner, visitor.address, visitor.account_limits)
    return settings


def _files(
    store: Store,
    conversation: Conversation,
    visitor: Visitor,
    settings: ReplySettings,
    text: str,
    file_ids: list[str],
    uploads: Uploads | None,
) -> list[dict]:
    limit = visitor.config["MAX_ATTACHMENTS"]
    try:
        new = uploads() if uploads is not None else []
        return files_to_send(store, conversation, file_ids, text, settings, limit, new)
    except attachments.AttachmentProblem as problem:
        raise Refused(str(problem), Refusal.INVALID) from None


def _let_through(
    store: Store, conversation: Conversation, visitor: Visitor, files: list[dict] | None = None
) -> answers_at_once.Held:
    """A slot for one more of this visitor's answers at once, and the answer counted against the limits of this
    visitor and address; Refused past either (`files` stay with the draft), and then nothing is held or counted."""
    owner, address = conversation.owner, visitor.address
    try:
        held = answers_at_once.claim(store, visitor.config, owner, address)
    except answers_at_once.TooManyAtOnce as too_many:
        raise Refused(str(too_many), Refusal.LIMITED, files) from None
    if refused := limits.refusal(store, visitor.config, "answers", owner, address, visitor.account_limits):
        held.release()
        raise Refused(refused, Refusal.LIMITED, files)
    return held
