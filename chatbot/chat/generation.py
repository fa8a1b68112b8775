"""One reply: save the user's message, ask the backend, stream, coalesce, save as it goes.

`run_reply`, `run_regeneration` and `run_continuation` take everything as
arguments, so a socket, a form post or a test can run them alike; they report
to a listener with `Event`s and never raise for a failed answer: the failure is
stored with the message and reported. One answer at a time per conversation:
starting one while another is written raises AnswerRunning. Nothing is thrown away: an edit or a
regeneration starts a branch beside what was there (chatbot/chat/branches.py), and the model sees that branch alone.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from chatbot.chat import attachments, limits, picker, reasoning, titles
from chatbot.chat.branches import Tree
from chatbot.chat.rendering import render_markdown
from chatbot.local_model.status import explain as explain_local_model_failure
from chatbot.services import catalogue, discovery, inference
from chatbot.services.errors import InferenceError
from chatbot.services.prompts import estimate_tokens, fit_to_context, strip_stops
from chatbot.services.protocols import PROTOCOLS, Chunk, Finish, Provider, Reasoning, Text, Usage
from chatbot.stores.conversations import Conversation, Message, Store, new_id
from chatbot.stores.failures import StoreUnavailable
from config import ModelSpec, parse_parameters

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.04  # at most one fragment per 40 ms per answer
SAVE_SECONDS = 0.25  # a partial answer is saved (and Stop from other tabs looked for) this often
STALE_SECONDS = 30.0  # a streaming answer not saved for this long was interrupted (its server went away)
_END = object()
WAIT = "Wait for the answer to finish, or press Stop."  # said when an answer is asked for while one is written


@dataclass
class Event:
    """What happened to an answer: "started", "waiting", "reasoning" or "delta" (with text), "reasoned" (with
    how long it thought, in words), "finished", and after a first answer "titled" (with the model's title)."""

    kind: str
    message: Message
    text: str = ""
    user_message: Message | None = None
    tree: Tree | None = None  # "started" beside earlier messages (an edit, a regeneration): all of them, to show anew
    so_far: Callable[[], str] | None = None  # text events: the answer's whole content up to and with this event


Listener = Callable[[Event], None]


@dataclass
class ReplySettings:
    backend: inference.Backend
    parameters: inference.Parameters
    system_prompt: str = ""
    max_loading_wait: float = 300.0  # seconds to keep retrying a model that is loading
    model_name: str = ""
    flush_seconds: float = FLUSH_SECONDS
    save_seconds: float = SAVE_SECONDS
    local_model_status: str | None = None  # the built-in model's status file: failures are told from it
    titles: bool = False  # after the first answer, the model writes the chat's title (chatbot/chat/titles.py)
    takes_images: bool = False  # attached images are shown to the model (OpenAI content parts)
    tokens_per_day: int = 0  # the owner's account may use this many tokens a day (0: no limit)


@dataclass
class _Answer:
    """The growing answer: its parts (how many are in the store), its timings, and when it was last saved."""

    message: Message
    parts: list[str] = field(default_factory=list)
    saved_parts: int = 1  # the first part, the content it started with, is in the store already
    saved_length: int = 0  # characters of the answer in the store
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    last_save: float = field(default_factory=time.monotonic)
    finish_reason: str | None = None
    usage: Usage | None = None  # what the server counted, when it says
    thinking: bool = False  # the newest part is reasoning (between reasoning.START and END in the parts)
    reasoning_started: float | None = None

    def text(self, parts: int | None = None) -> str:
        """The content, or its first `parts` parts."""
        return "".join(self.parts[:parts])


def message_problem(text: str, limit: int, with_files: bool = False) -> str | None:
    """Why a message (`with_files`: files go with it) cannot be sent, in words for the user; None when it can."""
    if not text and not with_files:
        return "Type a message first."
    if len(text) > limit:
        return f"Your message has {len(text):,} characters; the limit is {limit:,}. Shorten it and send again."
    return None


class AnswerRunning(Exception):
    """The conversation is being answered already, in this tab, another one, or on another worker."""


def history_turns(
    messages: list[Message], load: Callable[[str], tuple[dict, bytes] | None] | None = None, images: bool = False
) -> list[dict]:
    """The turns the model sees: every message with text, failed answers' parts included; with `load` (a file's
    id -> (info, bytes) or None), the text of its attached files and, when the model takes `images`, its images."""
    turns = []
    for m in messages:
        if load and (files := m.meta.get("attachments")):
            stored = [(f, load(f["id"]) if f.get("id") else None) for f in files]  # an import's have names alone
            turns.append(attachments.turn(m.role, m.content, stored, images))
        elif m.content.strip():
            turns.append({"role": m.role, "content": m.content})
    return turns


def files_to_send(
    store: Store,
    conversation: Conversation,
    file_ids: list[str],
    text: str,
    settings: ReplySettings,
    max_files: int,
    new: list[attachments.Attachment] | tuple = (),
) -> list[dict]:
    """The files to send with `text` (as stored): this conversation's named by `file_ids`, and the `new` uploads,
    which are stored once every check has passed. AttachmentProblem says why not, before anything is saved, so the
    message and its files stay in the box."""
    files = []
    for file_id in list(dict.fromkeys(file_ids))[: max_files + 1]:  # each once, and never more than can be told
        found = store.load_file(conversation, file_id)
        if found is None:
            raise attachments.AttachmentProblem("An attached file is no longer there. Attach it again.")
        files.append(found[0])
    files += [upload.info for upload in new]
    if problem := _attachments_problem(files, text, settings, max_files):
        raise attachments.AttachmentProblem(problem)
    for upload in new:
        store.save_file(conversation, upload.info["id"], upload.info, upload.data)
    return files


def _attachments_problem(files: list[dict], text: str, settings: ReplySettings, max_files: int) -> str | None:
    if not files:
        return None
    backend = discovery.with_server_facts(settings.backend)
    room = backend.context_length - settings.parameters.max_new_tokens if backend.context_length else None
    if room is not None and settings.system_prompt:
        room -= estimate_tokens(settings.system_prompt)
    name = settings.model_name or backend.model_id
    return attachments.sending_problem(files, text, name, settings.takes_images, room, max_files)


def can_edit(store: Store, conversation: Conversation, message_id: str) -> bool:
    """Whether `message_id` is one of the user's messages in the conversation (its edited text can be sent)."""
    return any(m.id == message_id and m.role == "user" for m in store.messages(conversation))


def running_answer(messages: list[Message]) -> Message | None:
    """The conversation's answer being written, on whichever branch (one at a time)."""
    return next((m for m in reversed(messages) if m.status == "streaming"), None)


def _start(store: Store, conversation: Conversation, messages: list[Message]) -> Message:
    """Save `messages` (the new answer last) in one step that no other answer can start during; an answer
    whose writer went away does not block it. AnswerRunning when one is being written."""
    for _ in range(2):
        if store.start_answer(conversation, messages):
            return messages[-1]
        running = running_answer(store.messages(conversation))
        if running is not None and not settle_abandoned(store, running):
            break
    raise AnswerRunning


def _new_answer(conversation: Conversation, settings: ReplySettings, question: Message) -> Message:
    meta = {"model": settings.model_name or settings.backend.model_id}
    return Message(new_id(), conversation.id, "assistant", "", status="streaming", meta=meta, parent_id=question.id)


def _shown_last(tree: Tree, conversation: Conversation, message_id: str | None) -> Message | None:
    """The last message a tab shows (`message_id`, sent with its action), else that of the chosen branch."""
    if message_id in tree.by_id:
        return tree.by_id[message_id]
    chosen = tree.chosen(conversation.leaf_id)
    return chosen[-1] if chosen else None


def run_reply(
    store: Store,
    conversation: Conversation,
    text: str,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    after: str | None = None,
    replacing: str | None = None,
    files: list[dict] | None = None,
) -> Message:
    """Answer `text`: a new message after `after` (the last message the tab shows), or the edited text of the
    user's message `replacing`, saved beside it as an alternative (nothing is thrown away), with `files` attached
    (as stored; an edited message keeps its own). The message is saved before anything is sent; the first one
    titles the chat. Returns the stored answer, whatever happened; AnswerRunning when the conversation is being
    answered already."""
    tree = Tree(store.messages(conversation))
    edited = tree.by_id.get(replacing or "")
    follows = tree.by_id.get(edited.parent_id or "") if edited else _shown_last(tree, conversation, after)
    user_message = Message(new_id(), conversation.id, "user", text, parent_id=follows.id if follows else None)
    if files:
        user_message.meta["attachments"] = [attachments.listed(info) for info in files]
    elif edited and edited.meta.get("attachments"):
        user_message.meta["attachments"] = edited.meta["attachments"]
    answer = _start(store, conversation, [user_message, _new_answer(conversation, settings, user_message)])
    first_title = titles.title_from(_in_words(user_message))  # saved alone, and only over "New chat": nothing is undone
    if conversation.title == "New chat" and store.replace_title(conversation, "New chat", first_title):
        conversation.title = first_title
    new_branch = edited is not None or (bool(tree.messages) and after not in tree.by_id)
    shown_anew = Tree([*tree.messages, user_message, answer]) if new_branch else None
    listener(Event("started", answer, user_message=user_message, tree=shown_anew))
    history = [*(tree.path_to(follows.id) if follows else []), user_message]  # nothing is inserted above it
    return _run(store, conversation, answer, history, settings, listener, cancel)


def run_regeneration(
    store: Store,
    conversation: Conversation,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    of: str | None = None,
) -> Message | None:
    """Answer again the question of the answer `of` (the last one the tab shows), beside it as an alternative;
    None when there is no question yet."""
    tree = Tree(store.messages(conversation))
    shown = _shown_last(tree, conversation, of)
    question = tree.by_id.get(shown.parent_id or "") if shown and shown.role == "assistant" else shown
    if question is None or question.role != "user":
        return None
    answer = _start(store, conversation, [_new_answer(conversation, settings, question)])
    listener(Event("started", answer, tree=Tree([*tree.messages, answer])))
    return _run(store, conversation, answer, tree.path_to(question.id), settings, listener, cancel)


def run_continuation(
    store: Store,
    conversation: Conversation,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    of: str | None = None,
) -> Message | None:
    """Go on with the answer `of` (the last one the tab shows), which stopped at the length limit; None when
    there is none to go on with."""
    tree = Tree(store.messages(conversation))
    answer = _to_continue(tree, conversation, of)
    if answer is None:
        return None
    answer.status, answer.html = "streaming", ""
    answer.meta.pop("finish_reason", None)
    _start(store, conversation, [answer])
    listener(Event("resumed", answer))
    return _run(store, conversation, answer, tree.path_to(answer.id)[:-1], settings, listener, cancel)


def is_abandoned(message: Message) -> bool:
    """Whether an answer still marked streaming has not been saved for STALE_SECONDS: its writer went away."""
    saved_at = message.meta.get("saved_at") or message.created_at
    return message.status == "streaming" and time.time() - saved_at >= STALE_SECONDS


def settle_abandoned(store: Store, message: Message) -> bool:
    """Keep what arrived of an abandoned answer (whole, as read), mark it interrupted and say so. True when it did."""
    if not is_abandoned(message):
        return False
    message.status = "error"
    message.error = InferenceError(
        "interrupted",
        "The answer was interrupted: the server stopped while writing it.",
        "What arrived is kept above; press Regenerate for a whole answer.",
    ).as_dict()
    reasoning.settle(message)
    message.html = str(render_markdown(message.content)) if message.content else ""
    store.update_message(message)
    return True


def answer_to_continue(store: Store, conversation: Conversation, of: str | None = None) -> Message | None:
    """The last answer shown (`of`, else the chosen branch's), if it stopped at the length limit and can be
    continued."""
    return _to_continue(Tree(store.messages(conversation)), conversation, of)


def _to_continue(tree: Tree, conversation: Conversation, of: str | None) -> Message | None:
    last = _shown_last(tree, conversation, of)
    if last and last.role == "assistant" and last.status == "done" and last.meta.get("finish_reason") == "length":
        return last
    return None


def _run(
    store: Store,
    conversation: Conversation,
    message: Message,
    history: list[Message],
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
) -> Message:
    """Write the started answer `message` (empty, or the part of an answer to go on from) to its end; the model
    sees `history`, the messages of its branch above it, alone."""
    cancel = cancel or threading.Event()
    answer = _Answer(message, parts=[message.content], saved_length=len(message.content))
    stops: tuple[str, ...] = ()
    reservation = limits.Reservation(conversation.owner, 0, settings.parameters.max_new_tokens)
    try:  # from here on, whatever fails is kept with the answer: it never stays "being written"
        turns = history_turns(history, lambda file_id: store.load_file(conversation, file_id), settings.takes_images)
        if settings.system_prompt:
            turns.insert(0, {"role": "system", "content": settings.system_prompt})
        backend, fitted = _fitted_turns(settings, turns)
        counted = fitted if PROTOCOLS[backend.api].counts_prompt else []
        reservation = _reserve(store, conversation.owner, settings, counted)
        parameters = dataclasses.replace(settings.parameters, max_new_tokens=reservation.max_new_tokens)
        request = inference.build_request(backend, parameters, fitted, message.content)
        stops = request.stop
        try:
            _stream(request, backend, answer, store, settings, listener, cancel)
        except InferenceError as error:  # a server that names its context window only when a prompt passes it
            if answer.tokens or not discovery.learn_context_length(backend, error):
                raise
            backend, fitted = _fitted_turns(settings, turns)
            request = inference.build_request(backend, parameters, fitted, message.content)
            _stream(request, backend, answer, store, settings, listener, cancel)
        if answer.finish_reason:
            message.meta["finish_reason"] = answer.finish_reason
        thought, said = reasoning.split(answer.text())
        if cancel.is_set():
            message.status = "stopped"
        elif strip_stops(said, stops).strip():
            message.status = "done"
        elif thought.strip() and answer.finish_reason == "length":
            message.status = "done"  # all of max_new_tokens went to thinking: Continue goes on from there
        elif thought.strip():
            raise InferenceError.thought_only(request.url)
        else:
            raise InferenceError.empty(request.url)
    except InferenceError as error:
        error = catalogue.with_alternatives(error, settings.backend)
        if settings.local_model_status:
            error = explain_local_model_failure(error, settings.local_model_status)
        message.status, message.error = "error", error.as_dict()
    except StoreUnavailable as error:
        log.error("answer %s could not be saved: %s", message.id, error.__cause__ or error)
        message.status, message.error = "error", _unsaved(error)
    except Exception:  # a bug must not lose the answer so far
        log.exception("answer %s failed", message.id)
        message.status = "error"
        message.error = InferenceError(
            "internal", "The chat failed while answering.", "Send again; if it keeps failing, the server log says why."
        ).as_dict()
    try:
        _finish(answer, stops, store)
        used = (message.meta.get("tokens") or 0) + (message.meta.get("prompt_tokens") or 0)
        limits.settle_tokens(store, reservation, used)
    except StoreUnavailable as error:  # the tab is still told the whole answer, and why it is not kept
        log.error("answer %s could not be saved: %s", message.id, error.__cause__ or error)
        message.status, message.error = "error", _unsaved(error)
    listener(Event("finished", message))
    if message.status == "done" and settings.titles and len(history) == 1 and history[0].role == "user":
        _retitle(store, conversation, _in_words(history[0]), message, settings, listener)
    return message


def _reserve(store: Store, owner: str, settings: ReplySettings, turns: list[dict]) -> limits.Reservation:
    """Set aside the answer's tokens (and the prompt's `turns`, where the server counts them) in its owner's count
    of today; an InferenceError in words when too few are left (answers started at once on other hosts may have
    taken them since the message was let through)."""
    prompt = sum(estimate_tokens(turn["content"]) for turn in turns if isinstance(turn["content"], str))
    try:
        return limits.reserve_tokens(store, owner, settings.tokens_per_day, prompt, settings.parameters.max_new_tokens)
    except limits.TokensUsedUp as used_up:
        raise InferenceError("limit", f"{used_up}.", "Your message is kept: press Regenerate then.") from None


def _fitted_turns(settings: ReplySettings, turns: list[dict]) -> tuple[inference.Backend, list[dict]]:
    """The backend with what its server says of itself, and `turns` with the oldest dropped to fit its context
    window when it is known."""
    backend = discovery.with_server_facts(settings.backend)
    count = discovery.token_counter(backend) if backend.context_length else None
    return backend, fit_to_context(turns, backend.context_length, settings.parameters.max_new_tokens, count)


def _in_words(message: Message) -> str:
    """What a message says: its text, or the names of its files when it has none (a file sent alone)."""
    return message.content or attachments.names(message)


def _retitle(
    store: Store,
    conversation: Conversation,
    question: str,
    answer: Message,
    settings: ReplySettings,
    listener: Listener,
) -> None:
    """After the chat's first answer (to `question`), the model's title in place of the question's, unless the
    chat was renamed before or while the model wrote it (only the title is saved: nothing else changed meanwhile
    is undone)."""
    first = titles.title_from(question)
    current = store.get_conversation(conversation.owner, conversation.id)
    if current is None or current.title != first:
        return
    title = titles.model_title(settings.backend, settings.parameters, question, answer.content)
    if title and store.replace_title(conversation, first, title):
        conversation.title = title
        listener(Event("titled", answer, title))


def _unsaved(error: StoreUnavailable) -> dict:
    hint = "What arrived is shown above, but it could not be saved: after a reload it may be missing or cut short."
    return InferenceError("store", str(error), hint).as_dict()


def _stream(
    request: inference.Request,
    backend: inference.Backend,
    answer: _Answer,
    store: Store,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event,
) -> None:
    """Stream the answer; while the model is loading, count down and try again, up to the limit."""
    waited = 0.0
    while True:
        try:
            chunks = inference.stream_chunks(request, backend, cancel)
            for batch in _coalesced(chunks, settings, cancel):
                _add(answer, batch, store, settings, listener, cancel)
            return
        except InferenceError as error:
            if error.kind != "loading" or answer.tokens or waited >= settings.max_loading_wait:
                raise
            pause = min(max(error.retry_after or 10.0, 1.0), settings.max_loading_wait - waited)
            if not _count_down(pause, answer.message, store, listener, cancel):
                return
            waited += pause


def _count_down(seconds: float, message: Message, store: Store, listener: Listener, cancel: threading.Event) -> bool:
    """Show "Model is loading, about N s" each second; False if the user stopped the wait (in any tab)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        listener(Event("waiting", message, f"Model is loading, about {math.ceil(left)} s"))
        message.meta["saved_at"] = time.time()  # still alive, for tabs that follow this answer
        store.update_message(message)
        if store.stop_requested(message.id):
            cancel.set()
        if cancel.wait(min(1.0, left)):
            return False
    listener(Event("waiting", message, "Trying again…"))
    return True


def _add(
    answer: _Answer,
    batch: list[Chunk],
    store: Store,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event,
) -> None:
    now = time.monotonic()
    runs: list[list] = []  # [kind, text, parts up to its end] with neighbours of one kind joined: one fragment each
    for chunk in batch:
        if isinstance(chunk, Text | Reasoning):
            if (said := _mark_reasoning(answer, isinstance(chunk, Reasoning), now)) is not None:
                runs.append(["reasoned", said, len(answer.parts)])
            kind = "reasoning" if answer.thinking else "delta"
            text = reasoning.strip_markers(chunk.text)
            answer.parts.append(text)
            answer.tokens += 1
            if runs and runs[-1][0] == kind:
                runs[-1][1] += text
                runs[-1][2] = len(answer.parts)
            else:
                runs.append([kind, text, len(answer.parts)])
        elif isinstance(chunk, Finish):
            answer.finish_reason = chunk.reason
        elif isinstance(chunk, Usage):
            answer.usage = chunk
        elif isinstance(chunk, Provider):
            answer.message.meta["provider"] = chunk.name
    if not runs:
        return
    if answer.first_token is None:
        answer.first_token = now
    for kind, text, parts in runs:
        listener(Event(kind, answer.message, text, so_far=partial(answer.text, parts)))
    if now - answer.last_save >= settings.save_seconds:
        new = "".join(answer.parts[answer.saved_parts :])
        if store.append_to_answer(answer.message, answer.saved_length, new):  # Stop pressed elsewhere, or chat deleted
            cancel.set()
        answer.saved_parts, answer.saved_length = len(answer.parts), answer.saved_length + len(new)
        answer.last_save = now


def _mark_reasoning(answer: _Answer, thinking: bool, now: float) -> str | None:
    """Open or close the reasoning in the parts when the stream goes from answer to thinking or back; when the
    thinking ends, what to say of it."""
    if thinking == answer.thinking:
        return None
    answer.parts.append(reasoning.START if thinking else reasoning.END)
    answer.thinking = thinking
    if thinking:
        answer.reasoning_started = answer.reasoning_started or now
        return None
    seconds = _thought_for(answer, now)
    answer.message.meta["reasoning_seconds"] = seconds
    return reasoning.thought_for(seconds)


def _thought_for(answer: _Answer, now: float) -> float:
    return round(now - (answer.reasoning_started or now), 1)


def _finish(answer: _Answer, stops: tuple[str, ...], store: Store) -> None:
    message = answer.message
    if answer.thinking:  # it ended while thinking
        message.meta["reasoning_seconds"] = _thought_for(answer, time.monotonic())
    message.content = answer.text()
    reasoning.settle(message)
    message.content = strip_stops(message.content, stops).strip()
    message.html = str(render_markdown(message.content)) if message.content else ""
    seconds = time.monotonic() - answer.started
    generating = time.monotonic() - answer.first_token if answer.first_token else 0.0
    usage = answer.usage or Usage()
    tokens = usage.completion_tokens or answer.tokens  # counted by the server, else the pieces that came
    speed = usage.tokens_per_second or (tokens / generating if generating > 0 and tokens > 1 else None)
    message.meta.update(
        tokens=tokens,
        tokens_estimated=not usage.completion_tokens,
        seconds=round(seconds, 2),
        first_token_seconds=round(answer.first_token - answer.started, 3) if answer.first_token else None,
        tokens_per_second=round(speed, 1) if speed else None,
        tokens_per_second_estimated=not usage.tokens_per_second and not usage.completion_tokens,  # from our count
        prompt_tokens=usage.prompt_tokens,  # counted by the server, when it says: what the prompt cost
    )
    store.update_message(message)


def _coalesced(tokens: Iterator[Chunk], settings: ReplySettings, cancel: threading.Event) -> Iterator[list[Chunk]]:
    """Group tokens so that at most one group is yielded per flush interval.

    A reader thread pulls from the backend into `inbox`; this side sleeps until the next
    flush is due (it does not wake for every token), so a held-back token is sent on time
    even if the backend stalls, and the end of the stream is seen at once.
    """
    inbox: collections.deque = collections.deque()
    arrived, ended = threading.Event(), threading.Event()

    def read() -> None:
        try:
            for token in tokens:
                inbox.append(token)
                arrived.set()
                if cancel.is_set():
                    break
        except BaseException as error:  # handed over to the caller's thread
            inbox.append(error)
        inbox.append(_END)
        ended.set()
        arrived.set()

    threading.Thread(target=read, daemon=True, name="reply-reader").start()
    last_flush = 0.0
    while not cancel.is_set():
        if not arrived.wait(0.25):
            continue
        due = last_flush + settings.flush_seconds - time.monotonic()
        if due > 0:
            ended.wait(due)  # sleep through the tokens that arrive meanwhile; the end wakes it
        arrived.clear()  # before draining: a token appended from now on sets it again
        batch: list[Chunk] = []
        while inbox:
            item = inbox.popleft()
            if item is _END or isinstance(item, BaseException):
                if batch:
                    yield batch
                if item is _END:
                    return
                raise item
            batch.append(item)
        if batch:
            yield batch
            if any(isinstance(chunk, Text) for chunk in batch):  # the first text is never held back
                last_flush = time.monotonic()


def model_spec(config: dict, name: str | None) -> ModelSpec:
    """The model with that name (configured, or from a server's catalogue); the first configured one when the
    name is unknown or empty."""
    return picker.choice(config, name).spec


def pick_model(store: Store, conversation: Conversation, name: str | None, config: dict) -> None:
    """Remember the model the user picked for this conversation (only one the picker offers)."""
    if name and picker.choice(config, name).name == name and conversation.settings.get("model") != name:
        conversation.settings["model"] = name
        store.update_conversation(conversation)


def settings_for_conversation(
    conversation: Conversation, config: dict, account_limits: dict | None = None
) -> ReplySettings:
    """The model's settings, with what the user set for this conversation on top, and the limits the admin set
    for accounts (`account_limits`, when the owner is an account)."""
    settings = settings_from_config(config, conversation.settings.get("model"), conversation.settings)
    settings.tokens_per_day = (account_limits or {}).get("tokens_per_day") or 0
    return settings


def save_conversation_settings(store: Store, conversation: Conversation, form: dict[str, str], config: dict) -> None:
    """Check and keep a conversation's settings (system prompt, parameters); ValueError says what is wrong."""
    spec = model_spec(config, conversation.settings.get("model"))
    fields = ("max_new_tokens", "temperature", "top_p", "reasoning_effort")
    given = {key: form[key] for key in fields if form.get(key, "").strip()}
    given["do_sample"] = "true" if form.get("do_sample") else "false"
    parameters = parse_parameters(given, spec.parameters)
    system_prompt = form.get("system_prompt", "").strip()
    if len(system_prompt) > config["MAX_MESSAGE_CHARS"]:  # it goes with every request: no larger than a message
        raise ValueError(
            f"the system prompt has {len(system_prompt):,} characters; the limit is {config['MAX_MESSAGE_CHARS']:,}"
        )
    conversation.settings["parameters"] = {k: v for k, v in parameters.items() if v != spec.parameters.get(k)}
    conversation.settings["system_prompt"] = system_prompt
    store.update_conversation(conversation)


def settings_from_config(config: dict, model_name: str | None = None, chosen: dict | None = None) -> ReplySettings:
    """Reply settings for one of the configured models (a plain mapping, no Flask needed)."""
    spec = model_spec(config, model_name)
    chosen = chosen or {}
    system_prompt = chosen["system_prompt"] if chosen.get("system_prompt") is not None else spec.system_prompt
    return ReplySettings(
        backend=inference.backend_for(spec, config),
        parameters=inference.Parameters(**{**spec.parameters, **chosen.get("parameters", {})}),
        system_prompt=system_prompt,
        max_loading_wait=config["MAX_LOADING_WAIT"],
        model_name=spec.name,
        local_model_status=config.get("LOCAL_MODEL_STATUS"),
        titles=config["MODEL_TITLES"] if spec.titles is None else spec.titles,
        takes_images=bool(spec.images) and spec.api == "chat",
    )
