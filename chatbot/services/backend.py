"""What a request for an answer is made of: the parameters, the backend it goes to, the prepared HTTP call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from chatbot.services import prompts
from chatbot.services.errors import InferenceError
from chatbot.services.prompts import Turn


@dataclass(frozen=True)
class Parameters:
    """Generation parameters, with the defaults of the user's notes."""

    max_new_tokens: int = 250
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    reasoning_effort: str | None = None  # none, low, medium or high, for servers that take it; None: not sent


@dataclass(frozen=True)
class Backend:
    """Where and how to ask for an answer; `api` names its protocol (chatbot/services/protocols)."""

    api: str
    url: str
    model_id: str
    token: str | None = field(default=None, repr=False)
    wait_for_model: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    chat_format: str | None = None  # None: found from the model id
    template: prompts.ChatTemplate | None = None  # the model's own chat template, preferred when known
    context_length: int | None = None  # tokens; None: unknown, history is not trimmed
    takes_tools: bool | None = None  # it is offered tools; None: not known (a refusal is remembered)

    def prompt(self, turns: list[Turn]) -> prompts.Prompt:
        """The prompt for prompt-taking APIs, in the model's own format."""
        family = prompts.format_prompt(self.model_id, turns, self.chat_format)
        if self.template is None:
            return family
        try:
            rendered = self.template.render(turns)
        except TemplateError as error:
            raise InferenceError(
                "template",
                f"The model's chat template could not write this conversation: {error}.",
                "Fix or remove the model's tokenizer_config in MODELS, or set its chat_format instead.",
                url=self.url,
            ) from None
        return prompts.Prompt(rendered.text, tuple(dict.fromkeys(rendered.stop + family.stop)))


CHARS_PER_TOKEN = 64  # the most one token says: hardly any model's vocabulary has a longer one
STREAM_CHARS = 256_000  # one stream may say this much whatever its max_new_tokens (some count no reasoning in it)


def stream_chars(max_new_tokens: int) -> int:
    """The most characters the stream of one request may say (text, reasoning and tool calls together): what
    `max_new_tokens` tokens could say, and at least STREAM_CHARS. An honest server stays far below; a hostile one
    (or a broken one) that streams on without end is cut there."""
    return max(STREAM_CHARS, CHARS_PER_TOKEN * max_new_tokens)


@dataclass(frozen=True)
class Request:
    """One prepared HTTP call: the URL, the headers and the JSON body; and the most characters its stream may say."""

    url: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    stop: tuple[str, ...] = ()
    max_chars: int = STREAM_CHARS
