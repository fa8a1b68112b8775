"""What every protocol is: how it builds a request and reads its own stream, into typed chunks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chatbot.services.backend import Backend, Parameters, Request
from chatbot.services.prompts import Turn

LENGTH_REASONS = {"length", "limit", "max_tokens"}  # each server's word for "stopped at max_new_tokens"
TOKENS_COUNTED = 2**31  # the most tokens a server's count is believed to say (of a prompt, or of an answer)
REASON_CHARS = 40  # of a finish reason, kept with the answer (every server's is a word or two)
PROVIDER_CHARS = 64  # of the provider a router names, kept with the answer and shown under it (a name: "novita")
NAME_LENGTH = 64  # what OpenAI-style servers take for a function's name (letters, digits, _ and -): the tools offered
ID_LENGTH = 128  # of a tool call's id (servers write a few dozen characters): a longer one is replaced by our own
ARGUMENTS_CHARS = 64_000  # of one call's arguments, ~16,000 tokens (a file written whole): past it, the call fails
CALLS_HEARD = 16  # calls of one turn kept (the first indexes heard): a hostile server may stream thousands


@dataclass(frozen=True)
class Text:
    """A piece of the answer: the text of `tokens` tokens (those of one read of the stream, joined), or what was
    held back of them (0: counted with the piece before)."""

    text: str
    tokens: int = field(default=1, compare=False)  # counted, not part of what it says


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's thinking before (or between) its answer: shown apart, never sent back to it."""

    text: str
    tokens: int = field(default=1, compare=False)  # counted, not part of what it says


@dataclass(frozen=True)
class Finish:
    """The answer ended: "stop", or "length" when it hit max_new_tokens (every server's word for it)."""

    reason: str

    @classmethod
    def said(cls, reason: Any) -> Finish:
        """The finish a server's reason says: one that is not text reads as "stop", a long one is cut at
        REASON_CHARS (it is kept with the answer)."""
        said = reason[:REASON_CHARS] if isinstance(reason, str) else ""
        return cls("length" if said in LENGTH_REASONS else said or "stop")


@dataclass(frozen=True)
class Usage:
    """What the server counted: tokens of the prompt and of the answer, its own decoding speed."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None

    @classmethod
    def said(cls, prompt_tokens: Any = None, completion_tokens: Any = None, tokens_per_second: Any = None) -> Usage:
        """What a server's counts say, each only when it is one: a whole number of tokens from 0 to TOKENS_COUNTED,
        a finite speed of 0 or more (a hostile server's text, -5 or 10**300 is not believed, and not kept)."""
        prompt, answer = (
            n if type(n) is int and 0 <= n <= TOKENS_COUNTED else None for n in (prompt_tokens, completion_tokens)
        )
        fast = type(tokens_per_second) in (int, float) and 0 <= tokens_per_second < math.inf
        return cls(prompt, answer, float(tokens_per_second) if fast else None)


@dataclass(frozen=True)
class Provider:
    """Who served the answer, when a router says (the Hugging Face router's `x-inference-provider`)."""

    name: str

    @classmethod
    def said(cls, header: str) -> Provider:
        """The provider a header names, cut at PROVIDER_CHARS (a header may be 64 kB, and it is kept and shown)."""
        name = header.strip()
        return cls(name if len(name) <= PROVIDER_CHARS else name[: PROVIDER_CHARS - 1] + "…")


@dataclass(frozen=True)
class ToolCallPiece:
    """A piece of a tool call the model makes: the call's `index` in its turn; its `id` and `name` come in its
    first piece, its `arguments` (JSON text) in pieces cut anywhere."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ToolCall:
    """A whole tool call: its id, the tool's name, and its arguments as the model wrote them (JSON text); or, when
    they were longer than ARGUMENTS_CHARS, "{}" in their place and their length in `too_long` (the call is not
    made)."""

    id: str
    name: str
    arguments: str
    too_long: int = 0

    def as_message_part(self) -> dict[str, Any]:
        """The call as the assistant message that made it carries it back to the server."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class _Heard:
    """One call as its pieces come: its id and name, the pieces of its arguments kept, and their length in all."""

    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)
    length: int = 0


class ToolCalls:
    """The calls of one turn, put together from their pieces (several calls by index, in any order), each bounded
    against a server that streams without end: only the first CALLS_HEARD indexes heard are kept (a piece of
    another is dropped), an id past ID_LENGTH is not kept, a name past NAME_LENGTH is cut (with "…", so it names
    no tool), arguments past ARGUMENTS_CHARS are counted, not kept."""

    def __init__(self) -> None:
        self._calls: dict[int, _Heard] = {}

    def add(self, piece: ToolCallPiece) -> None:
        if piece.index not in self._calls and len(self._calls) >= CALLS_HEARD:
            return
        call = self._calls.setdefault(piece.index, _Heard())
        if not call.id and piece.id and len(piece.id) <= ID_LENGTH:
            call.id = piece.id
        if not call.name and piece.name:
            call.name = piece.name if len(piece.name) <= NAME_LENGTH else piece.name[:NAME_LENGTH] + "…"
        call.length += len(piece.arguments)
        if call.length <= ARGUMENTS_CHARS:
            call.pieces.append(piece.arguments)
        else:
            call.pieces.clear()

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        """The calls in order, each with an id of its own: one whose server gave none (or one too long, or the id
        of a call before it) gets the chat's `call_N`, N its place in the turn or the next one no call has (the
        answer to a call must name it, and name no other)."""
        heard = [self._calls[index] for index in sorted(self._calls)]
        taken = {call.id for call in heard}
        seen: set[str] = set()
        for place, call in enumerate(heard):
            if not call.id or call.id in seen:
                call.id = next(f"call_{n}" for n in itertools.count(place) if f"call_{n}" not in taken)
                taken.add(call.id)
            seen.add(call.id)
        return [
            ToolCall(call.id, call.name, "".join(call.pieces))
            if call.length <= ARGUMENTS_CHARS
            else ToolCall(call.id, call.name, "{}", too_long=call.length)
            for call in heard
        ]


Chunk = Text | Reasoning | Finish | Usage | Provider | ToolCallPiece


def held_back(
    chunks: Iterator[Chunk], feed: Callable[[str], tuple[str, str]], finish: Callable[[str], str] = str
) -> Iterator[Chunk]:
    """The stream with its text (answer and reasoning apart) passed through `feed`, which returns what to send now
    and what to hold back for the next piece (a tag, a secret or a character cut in two); what is held goes out,
    through `finish`, before any other chunk and at the end. A piece held back whole has its tokens counted with
    the next piece that goes out."""
    held: dict[type[Text | Reasoning], str] = {Text: "", Reasoning: ""}
    owed: dict[type[Text | Reasoning], int] = {Text: 0, Reasoning: 0}  # tokens of pieces held back whole

    def flush() -> Iterator[Chunk]:
        for kind, text in held.items():
            if text:
                held[kind] = ""
                yield kind(finish(text), owed[kind])
                owed[kind] = 0

    for chunk in chunks:
        if not isinstance(chunk, Text | Reasoning):
            yield from flush()
            yield chunk
            continue
        kind = type(chunk)
        text, held[kind] = feed(held[kind] + chunk.text)
        if text:
            yield kind(text, owed[kind] + chunk.tokens)
            owed[kind] = 0
        else:
            owed[kind] += chunk.tokens
    yield from flush()


class Protocol:
    """One wire protocol: its default address, its request, and how one decoded event reads."""

    name: ClassVar[str]
    takes_prompt: ClassVar[bool] = False  # the app writes the prompt in the model's chat format
    openai_compatible: ClassVar[bool] = True  # it has `/v1/models`: a catalogue to pick from
    counts_prompt: ClassVar[bool] = True  # the server says how many tokens the prompt took (usage.prompt_tokens)
    takes_tools: ClassVar[bool] = False  # the request may offer the model tools, and its stream call them

    def model_id(self, given: str) -> str:
        """The model id as this protocol's servers know it."""
        return given

    def default_url(self, model_id: str) -> str:
        raise NotImplementedError

    def request(
        self,
        backend: Backend,
        parameters: Parameters,
        turns: list[Turn],
        continuing: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> Request:
        """Ask for an answer to `turns`, or for the rest of `continuing`, an answer cut at the length limit;
        offering `tools` (chat completions' `tools` list) where the protocol takes them."""
        raise NotImplementedError

    def chunks(self, event: dict[str, Any]) -> Iterator[Chunk]:
        """What one event of the stream (or a whole JSON answer) says."""
        raise NotImplementedError

    def text_only(self, event: dict[str, Any]) -> str | None:
        """The text of an event that says nothing but one token's text (most of a stream), read without `chunks`;
        None for any other event, which `chunks` reads."""
        return None


def headers(backend: Backend) -> dict[str, str]:
    """A JSON request for an event stream, with the token when there is one."""
    sent = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if backend.token:
        sent["Authorization"] = f"Bearer {backend.token}"
    return sent


def openai_url(base: str, route: str) -> str:
    """`base` + `route`, unless the URL already names the route."""
    return base if base.endswith(route) else base + route


def sampling(parameters: Parameters) -> dict[str, Any]:
    """OpenAI-style sampling fields: greedy decoding is temperature 0."""
    if not parameters.do_sample:
        return {"temperature": 0.0}
    return {"temperature": parameters.temperature, "top_p": parameters.top_p}


def unfinished_choice(event: dict[str, Any]) -> dict[str, Any] | None:
    """The first choice of an OpenAI event that neither finishes nor counts anything (most of a stream), else None."""
    choices = event.get("choices")
    if event.get("usage") or event.get("timings") or type(choices) is not list or not choices:
        return None
    choice = choices[0]
    return choice if type(choice) is dict and not choice.get("finish_reason") else None


def openai_usage(event: dict[str, Any]) -> Iterator[Usage]:
    """`usage` (prompt and completion tokens) and llama.cpp's `timings` (its true decoding speed)."""
    usage, timings = (found if isinstance(found := event.get(name), dict) else {} for name in ("usage", "timings"))
    if usage or timings:
        yield Usage.said(
            usage.get("prompt_tokens"), usage.get("completion_tokens"), timings.get("predicted_per_second")
        )
