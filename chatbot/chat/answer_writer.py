"""An answer written to its end: the request built from its branch, streamed (retried while the model loads),
coalesced, saved as it grows, reported to a listener as `Event`s, and finished with its timings; a failure is
kept with the answer, never raised."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from chatbot.chat import approvals, attachments, limits, reasoning, titles, tool_call_places, tool_calls, tool_images
from chatbot.chat.coalescing import coalesced
from chatbot.chat.events import Event, Kind, Listener
from chatbot.chat.reply_settings import ReplySettings
from chatbot.local_model.status import explain as explain_local_model_failure
from chatbot.services import catalogue, discovery, inference, redaction, tools
from chatbot.services.errors import InferenceError
from chatbot.services.prompts import estimate_tokens, fit_to_context, strip_stops
from chatbot.services.protocols import (
    PROTOCOLS,
    Chunk,
    Finish,
    Provider,
    Reasoning,
    Text,
    ToolCall,
    ToolCallPiece,
    ToolCalls,
    Usage,
)
from chatbot.stores.conversations import Conversation, Message, Store
from chatbot.stores.failures import StoreUnavailable

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0  # while a tool runs, the answer is marked alive this often (running.STALE_SECONDS is 30)
STOP_CHECK_SECONDS = 0.25  # and Stop from other tabs, workers and hosts looked for this often
CALLS_PER_ROUND = 8  # tool calls run of one turn; those past it are not run, and the model is told so


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


@dataclass
class GrowingAnswer:
    """The answer as it grows: its parts (how many are in the store), its timings, and when it was last saved."""

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
    calls: ToolCalls = field(default_factory=ToolCalls)  # the tools the model calls in its current turn
    earlier_usage: Usage | None = None  # what the server counted for the turns before the current one
    tool_seconds: float = 0.0  # the wall time its tool calls ran (TOOL_TIME_BUDGET_S bounds it)

    def text(self, parts: int | None = None) -> str:
        """The content, or its first `parts` parts."""
        return "".join(self.parts[:parts])

    def said(self) -> str:
        """The answer's text so far, its reasoning apart."""
        return reasoning.split(self.text())[1]

    def mark_reasoning(self, thinking: bool, now: float) -> str | None:
        """Open or close the reasoning in the parts when the stream goes from answer to thinking or back; when the
        thinking ends, what to say of it."""
        if thinking == self.thinking:
            return None
        self.parts.append(reasoning.START if thinking else reasoning.END)
        self.thinking = thinking
        if thinking:
            self.reasoning_started = self.reasoning_started or now
            return None
        seconds = self.thought_for(now)
        self.message.meta["reasoning_seconds"] = seconds
        return reasoning.thought_for(seconds)

    def thought_for(self, now: float) -> float:
        return round(now - (self.reasoning_started or now), 1)


class AnswerWriter:
    """Writes the started answers of one conversation with one store, settings, listener and Stop signal."""

    def __init__(
        self,
        store: Store,
        conversation: Conversation,
        settings: ReplySettings,
        listener: Listener,
        cancel: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.conversation = conversation
        self.settings = settings
        self.listener = listener
        self.cancel = cancel or threading.Event()

    def write(self, message: Message, history: list[Message]) -> Message:
        """Write the started answer `message` (empty, or the part of an answer to go on from) to its end; the model
        sees `history`, the messages of its branch above it, alone."""
        settings, store, owner = self.settings, self.store, self.conversation.owner
        answer = GrowingAnswer(message, parts=[message.content], saved_length=len(message.content))
        stops: tuple[str, ...] = ()
        reservation = limits.Reservation(owner, 0, settings.parameters.max_new_tokens)
        try:  # from here on, whatever fails is kept with the answer: it never stays "being written"
            turns = history_turns(history, partial(store.load_file, self.conversation), settings.takes_images)
            if settings.system_prompt:
                turns.insert(0, {"role": "system", "content": settings.system_prompt})
            backend, fitted = self._fitted_turns(turns)
            reservation = self._reserve(self._counted(backend, fitted))
            parameters = dataclasses.replace(settings.parameters, max_new_tokens=reservation.max_new_tokens)
            token = redaction.secrets_of(backend)  # the toolbox hides it, and its servers' own, in results
            toolbox = self._toolbox(backend, token, message)
            secrets = token + redaction.secrets_of_servers(settings.tool_servers)  # hidden in every call
            round_turns: list[dict] = []  # the tool calls made so far and their results, as the model sees them
            rounds = 0
            while True:
                more = rounds < settings.tool_rounds and self._tool_time_left(answer) > 0  # else it answers without
                offered = toolbox.definitions() if toolbox and more else None
                continuing = "" if round_turns else message.content
                request = inference.build_request(backend, parameters, fitted + round_turns, continuing, offered)
                stops, answer.calls, start = request.stop, ToolCalls(), len(answer.text())
                try:
                    self._stream(request, backend, answer)
                except InferenceError as error:
                    if answer.tokens:
                        raise
                    if offered and tools.refuses_tools(error):  # then it answers without them, and says why
                        message.meta["tools_refused"] = tools.remember_refusal(backend, error)
                        toolbox = None
                        continue
                    if not discovery.learn_context_length(backend, error):  # a server that names its window
                        raise  # only when a prompt passes it
                    backend, fitted = self._fitted_turns(turns)
                    continue
                calls = [redaction.scrubbed_call(c, secrets) for c in answer.calls.calls()]
                if not calls or self.cancel.is_set():
                    break
                if offered is None or toolbox is None:  # past TOOL_ROUNDS or its tool time (or none offered): not made
                    why, at = "Not run: the answer had used all its rounds of tool calls.", len(answer.said())
                    if toolbox and self._tool_time_left(answer) <= 0:
                        why = self._out_of_tool_time()
                    message.meta.setdefault("tool_calls", []).extend(
                        {**tool_calls.not_run(call, why), "at": at}
                        for call in calls  # where they were made
                    )
                    break
                rounds += 1
                round_turns += self._run_round(answer, toolbox, calls, start)
                if self.cancel.is_set():  # Stop during the round: the model is not asked again
                    break
                if settings.asker and (limited := limits.another_request(store, settings.asker)):
                    raise InferenceError("limit", limited, "What the tools gave is kept with the answer.")
                reservation = self._reserve(self._counted(backend, fitted + round_turns), reservation)
                parameters = dataclasses.replace(parameters, max_new_tokens=reservation.max_new_tokens)
            self._settle_status(answer, stops, request.url)
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
                "internal",
                "The chat failed while answering.",
                "Send again; if it keeps failing, the server log says why.",
            ).as_dict()
        try:
            self._finish(answer, stops)
            used = (message.meta.get("tokens") or 0) + (message.meta.get("prompt_tokens") or 0)
            limits.settle_tokens(store, reservation, used)
        except StoreUnavailable as error:  # the tab is still told the whole answer, and why it is not kept
            log.error("answer %s could not be saved: %s", message.id, error.__cause__ or error)
            message.status, message.error = "error", _unsaved(error)
        self.listener(Event(Kind.FINISHED, message))
        if message.status == "done" and settings.titles and len(history) == 1 and history[0].role == "user":
            self._retitle(attachments.in_words(history[0]), message)
        return message

    def _toolbox(self, backend: inference.Backend, secrets: list[str], message: Message) -> tools.Toolbox | None:
        """The tools offered to this answer, `secrets` (the model server's) and their servers' own hidden in their
        results: none for a protocol without tools, a model that takes none (MODELS, or its server says so), or a
        server that refused them. The tool servers that did not answer are named in the `message`'s meta."""
        settings = self.settings
        if not settings.tool_servers or not PROTOCOLS[backend.api].takes_tools or tools.refused_before(backend):
            return None
        if backend.takes_tools is False:
            return None
        toolbox = tools.toolbox_for(
            settings.tool_servers,
            settings.tool_timeout,
            settings.tool_result_max_chars,
            settings.connect_timeout,
            tuple(secrets),
        )
        message.meta.pop("tools_unanswered", None)
        if toolbox.unanswered:  # said under the answer (templates/chat/_message.html)
            message.meta["tools_unanswered"] = toolbox.unanswered
        return toolbox or None

    def _run_round(
        self, answer: GrowingAnswer, toolbox: tools.Toolbox, calls: list[ToolCall], start: int
    ) -> list[dict]:
        """Run the calls of one turn, one at a time (none after Stop, looked for in the store before each call, nor
        past CALLS_PER_ROUND or the answer's tool time, nor one whose arguments were too long), keep their records
        with the answer, and return the turns that tell the model what they gave (and show the images they returned
        to a model that takes images); what the model wrote before them (from character `start`) goes with its
        calls."""
        message = answer.message
        self._save(answer)  # what it wrote before calling: in the store before the call may take a while
        at = len(answer.said())  # where the calls are made, in the text shown
        records = []
        for number, call in enumerate(calls):
            if number >= CALLS_PER_ROUND:
                records.append(tool_calls.not_run(call, f"Not run: at most {CALLS_PER_ROUND} tool calls per turn."))
            elif call.too_long:
                records.append(tool_calls.too_long(call))
            elif self.cancel.is_set() or self.store.stop_requested(message.id):  # Stop in any tab, worker or host
                self.cancel.set()
                records.append(tool_calls.not_run(call, "Not run: the user pressed Stop."))
            elif self._tool_time_left(answer) <= 0:
                records.append(tool_calls.not_run(call, self._out_of_tool_time()))
            elif (refused := self._asked_first(answer, toolbox, call)) is not None:
                records.append(refused)
            else:
                records.append(self._run_call(answer, toolbox, call, at))
            self._place(answer, records[-1], at)
        said = reasoning.split(answer.text()[start:])[1]
        if said.strip() and not said.endswith("\n"):
            self._add(answer, [Text("\n\n")])  # the next turn's text starts a paragraph of its own
        answer.earlier_usage, answer.usage = _summed(answer.earlier_usage, answer.usage), None
        turns = tool_calls.round_turns(said.strip(), calls, records)
        if self.settings.takes_images:
            turns += tool_images.turn(self.store, self.conversation, records)
        return turns

    def _asked_first(self, answer: GrowingAnswer, toolbox: tools.Toolbox, call: ToolCall) -> dict | None:
        """None when the call may be made (its server trusts the model, or the user said yes on its card), else
        its record; the answer stays alive while the card waits."""
        waiting = approvals.Waiting(
            self.store,
            self.conversation,
            answer.message,
            self.listener,
            self.cancel,
            partial(self._keep_alive, answer),
            HEARTBEAT_SECONDS,
            self.settings.tool_approval_minutes,
        )
        return approvals.asked_first(waiting, call, toolbox.tools.get(call.name))

    def _keep_alive(self, answer: GrowingAnswer) -> None:
        """Save the answer whole, as it is so far (no part is added) with its meta: alive for other tabs and hosts."""
        message = answer.message
        message.content, message.meta["saved_at"] = answer.text(answer.saved_parts), time.time()
        self.store.update_message(message)

    def _tool_time_left(self, answer: GrowingAnswer) -> float:
        """The seconds the answer's tool calls may still run (TOOL_TIME_BUDGET_S)."""
        return self.settings.tool_time_budget - answer.tool_seconds

    def _out_of_tool_time(self) -> str:
        return f"Not run: the answer had used its {self.settings.tool_time_budget:g} s of tool time."

    def _place(self, answer: GrowingAnswer, record: dict, at: int) -> None:
        """Keep a call's record with the answer at its place (`at`, in its text), in place of the record of it
        running, saved for every tab, worker and host, and show it."""
        kept = answer.message.meta.setdefault("tool_calls", [])
        if kept and kept[-1]["status"] == "running":
            kept.pop()
        kept.append({**record, "at": at})
        self._keep_alive(answer)
        self.listener(Event(Kind.CALLING, answer.message, so_far=answer.text))

    def _run_call(self, answer: GrowingAnswer, toolbox: tools.Toolbox, call: ToolCall, at: int) -> dict:
        """One call, shown running at its place (`at`), run in a thread of its own while this one says which tool
        runs and for how long, keeps the answer alive for other tabs and hosts, and hears Stop from any of them;
        cancelled, as Stop cancels it, when the answer's tool time runs out. The images it returns are kept after
        the answer's earlier ones."""
        message = answer.message
        earlier_images = _images_in(message.meta.get("tool_calls", []))
        self._place(answer, tool_calls.running(call), at)
        outcome: list[tools.ToolResult | BaseException] = []
        left = self._tool_time_left(answer)
        cut = threading.Event()  # Stop, or the answer's tool time spent: the call is cancelled on its server

        def run() -> None:
            try:
                outcome.append(toolbox.call(call.id, call.name, call.arguments, cut))
            except BaseException as error:  # handed over to this thread
                outcome.append(error)

        worker = threading.Thread(target=run, daemon=True, name="tool-call")
        started = last_beat = time.monotonic()
        worker.start()
        while worker.is_alive():
            elapsed = time.monotonic() - started
            self.listener(Event(Kind.WAITING, message, f"Running {call.name}… {math.floor(elapsed)} s"))
            worker.join(STOP_CHECK_SECONDS)
            if self.store.stop_requested(message.id):
                self.cancel.set()
            if self.cancel.is_set() or time.monotonic() - started >= left:
                cut.set()
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:  # alive, with the calls made so far
                self._keep_alive(answer)
                last_beat = time.monotonic()
        self.listener(Event(Kind.WAITING, message, ""))
        seconds = time.monotonic() - started
        answer.tool_seconds += seconds
        result = outcome[0]
        if isinstance(result, tools.ToolCallStopped):
            why = "Stopped: the user pressed Stop while it ran, and it was cancelled."
            if not self.cancel.is_set():
                budget = self.settings.tool_time_budget
                why = f"Cut: the answer had used its {budget:g} s of tool time while it ran, and it was cancelled."
            return {**tool_calls.not_run(call, why), "seconds": round(seconds, 1)}
        if isinstance(result, BaseException):
            raise result
        kept_mb = self.settings.files_kept_mb
        images, note = tool_images.kept(
            self.store, self.conversation, call.name, result.images, earlier_images, kept_mb
        )
        return tool_calls.done(result, images, note)

    def _settle_status(self, answer: GrowingAnswer, stops: tuple[str, ...], url: str) -> None:
        """Done, stopped, or an InferenceError saying why nothing was answered."""
        message = answer.message
        if answer.finish_reason:
            message.meta["finish_reason"] = answer.finish_reason
        thought, said = reasoning.split(answer.text())
        if self.cancel.is_set():
            message.status = "stopped"
        elif strip_stops(said, stops).strip():
            message.status = "done"
        elif thought.strip() and answer.finish_reason == "length":
            message.status = "done"  # all of max_new_tokens went to thinking: Continue goes on from there
        elif thought.strip():
            raise InferenceError.thought_only(url)
        else:
            raise InferenceError.empty(url)

    @staticmethod
    def _counted(backend: inference.Backend, turns: list[dict]) -> list[dict]:
        """The turns of a prompt that count in the tokens of today: all of them where the server counts them."""
        return turns if PROTOCOLS[backend.api].counts_prompt else []

    def _reserve(self, turns: list[dict], more_than: limits.Reservation | None = None) -> limits.Reservation:
        """Set aside a request's tokens (and the prompt's `turns`) in its owner's count of today, added to what the
        answer set aside before (`more_than`: each round after tool calls is a request too); an InferenceError in
        words when too few are left (answers started at once on other hosts may have taken them since the message
        was let through), which ends the answer with what it wrote."""
        prompt = sum(estimate_tokens(turn["content"]) for turn in turns if isinstance(turn.get("content"), str))
        allowed, wanted = self.settings.tokens_per_day, self.settings.parameters.max_new_tokens
        try:
            if more_than is not None:
                return limits.reserve_more(self.store, more_than, allowed, prompt, wanted)
            return limits.reserve_tokens(self.store, self.conversation.owner, allowed, prompt, wanted)
        except limits.TokensUsedUp as used_up:
            raise InferenceError("limit", f"{used_up}.", "Your message is kept: press Regenerate then.") from None

    def _fitted_turns(self, turns: list[dict]) -> tuple[inference.Backend, list[dict]]:
        """The backend with what its server says of itself, and `turns` with the oldest dropped to fit its context
        window when it is known."""
        backend = discovery.with_server_facts(self.settings.backend)
        count = discovery.token_counter(backend) if backend.context_length else None
        return backend, fit_to_context(turns, backend.context_length, self.settings.parameters.max_new_tokens, count)

    def _retitle(self, question: str, answer: Message) -> None:
        """After the chat's first answer (to `question`), the model's title in place of the question's, unless the
        chat was renamed before or while the model wrote it (only the title is saved: nothing else changed
        meanwhile is undone)."""
        conversation = self.conversation
        first = titles.title_from(question)
        current = self.store.get_conversation(conversation.owner, conversation.id)
        if current is None or current.title != first:
            return
        title = titles.model_title(self.settings.backend, self.settings.parameters, question, answer.content)
        if title and self.store.replace_title(conversation, first, title):
            conversation.title = title
            self.listener(Event(Kind.TITLED, answer, title))

    def _stream(self, request: inference.Request, backend: inference.Backend, answer: GrowingAnswer) -> None:
        """Stream the answer; while the model is loading, count down and try again, up to the limit."""
        waited, most = 0.0, self.settings.max_loading_wait
        while True:
            try:
                chunks = inference.stream_chunks(request, backend, self.cancel)
                for batch in coalesced(chunks, self.settings.flush_seconds, self.cancel):
                    self._add(answer, batch)
                return
            except InferenceError as error:
                if error.kind != "loading" or answer.tokens or waited >= most:
                    raise
                pause = min(max(error.retry_after or 10.0, 1.0), most - waited)
                if not self._count_down(pause, answer.message):
                    return
                waited += pause

    def _count_down(self, seconds: float, message: Message) -> bool:
        """Show "Model is loading, about N s" each second; False if the user stopped the wait (in any tab)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.listener(Event(Kind.WAITING, message, f"Model is loading, about {math.ceil(left)} s"))
            message.meta["saved_at"] = time.time()  # still alive, for tabs that follow this answer
            self.store.update_message(message)
            if self.store.stop_requested(message.id):
                self.cancel.set()
            if self.cancel.wait(min(1.0, left)):
                return False
        self.listener(Event(Kind.WAITING, message, "Trying again…"))
        return True

    def _add(self, answer: GrowingAnswer, batch: list[Chunk]) -> None:
        """Add one coalesced batch: told as one event per run of text or reasoning, saved when a save is due."""
        now = time.monotonic()
        runs: list[list] = []  # [kind, texts, parts up to its end] with neighbours of one kind joined: one event each
        for chunk in batch:
            if isinstance(chunk, Text | Reasoning):
                if (said := answer.mark_reasoning(isinstance(chunk, Reasoning), now)) is not None:
                    runs.append([Kind.REASONED, [said], len(answer.parts)])
                kind = Kind.REASONING if answer.thinking else Kind.DELTA
                text = reasoning.strip_markers(chunk.text)
                answer.parts.append(text)
                answer.tokens += chunk.tokens
                if runs and runs[-1][0] == kind:
                    runs[-1][1].append(text)
                    runs[-1][2] = len(answer.parts)
                else:
                    runs.append([kind, [text], len(answer.parts)])
            elif isinstance(chunk, Finish):
                answer.finish_reason = chunk.reason
            elif isinstance(chunk, Usage):
                answer.usage = chunk
            elif isinstance(chunk, ToolCallPiece):
                answer.calls.add(chunk)
            elif isinstance(chunk, Provider):
                answer.message.meta["provider"] = chunk.name
        if not runs:
            return
        if answer.first_token is None:
            answer.first_token = now
        for kind, texts, parts in runs:
            self.listener(Event(kind, answer.message, "".join(texts), so_far=partial(answer.text, parts)))
        if now - answer.last_save >= self.settings.save_seconds:
            self._save(answer)

    def _save(self, answer: GrowingAnswer) -> None:
        """Append to the stored answer what it does not have yet (nothing when it has it all: a part is kept once
        per place in the answer, and two rounds of tool calls with no text between them start at the same place)."""
        new = "".join(answer.parts[answer.saved_parts :])
        if not new:
            answer.saved_parts, answer.last_save = len(answer.parts), time.monotonic()
            return
        if self.store.append_to_answer(answer.message, answer.saved_length, new):  # Stop elsewhere, or deleted
            self.cancel.set()
        answer.saved_parts, answer.saved_length = len(answer.parts), answer.saved_length + len(new)
        answer.last_save = time.monotonic()

    def _finish(self, answer: GrowingAnswer, stops: tuple[str, ...]) -> None:
        """The answer's content settled (reasoning apart, stop sequences off), rendered, timed, and saved."""
        message = answer.message
        if answer.thinking:  # it ended while thinking
            message.meta["reasoning_seconds"] = answer.thought_for(time.monotonic())
        message.content = answer.text()
        reasoning.settle(message)
        said, message.content = message.content, strip_stops(message.content, stops).strip()
        tool_call_places.settle(message, said)
        seconds = time.monotonic() - answer.started
        generating = time.monotonic() - answer.first_token if answer.first_token else 0.0
        usage = _summed(answer.earlier_usage, answer.usage) or Usage()
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
        self.store.update_message(message)


def _summed(earlier: Usage | None, latest: Usage | None) -> Usage | None:
    """What the server counted over several turns of one answer (its speed: the latest turn's)."""
    if earlier is None or latest is None:
        return latest or earlier

    def add(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Usage(
        add(earlier.prompt_tokens, latest.prompt_tokens),
        add(earlier.completion_tokens, latest.completion_tokens),
        latest.tokens_per_second,
    )


def _images_in(records: list[dict]) -> int:
    """How many images the tool calls of `records` kept."""
    return sum(len(record.get("images", [])) for record in records)


def _unsaved(error: StoreUnavailable) -> dict:
    hint = "What arrived is shown above, but it could not be saved: after a reload it may be missing or cut short."
    return InferenceError("store", str(error), hint).as_dict()
