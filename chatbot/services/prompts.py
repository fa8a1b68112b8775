"""Chat formats for text-generation backends: one small formatter per model family.

A turn is a dict {"role": "system" | "user" | "assistant", "content": str}.
`format_prompt(model_id, turns)` returns the prompt and the stop sequences
the model needs; the formats are in docs/protocols.md ("Chat formats").
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

Turn = dict[str, Any]  # "role", "content" (text), and "images" (data: URLs) when the model is shown any

# Short names people use (OpenRouter's) -> the Hub repositories.
HUB_ALIASES = {
    "meta-llama/llama-2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "mistralai/mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.2",
}

# Markers that are never shown to the user, whatever the server says of them.
SPECIAL_TOKENS = frozenset(
    {
        "<bos>",
        "<eos>",
        "<end_of_turn>",
        "<start_of_turn>",
        "<s>",
        "</s>",
        "<|endoftext|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|end|>",
    }
)


@dataclass(frozen=True)
class Prompt:
    text: str
    stop: tuple[str, ...]


def hub_model_id(model_id: str) -> str:
    """The Hub id for a model, resolving the short lowercase aliases."""
    return HUB_ALIASES.get(model_id.lower(), model_id)


def alternate(turns: list[Turn]) -> tuple[str, list[Turn]]:
    """Split off the system text and merge neighbours of one role so roles alternate (tool calls and their
    answers stay messages of their own)."""
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system" and t["content"])
    merged: list[Turn] = []
    for turn in turns:
        if turn["role"] == "system":
            continue
        if merged and merged[-1]["role"] == turn["role"] and not _in_a_tool_round(turn, merged[-1]):
            images = [*merged[-1].get("images", []), *turn.get("images", [])]
            merged[-1] = {"role": turn["role"], "content": merged[-1]["content"] + "\n\n" + turn["content"]}
            if images:
                merged[-1]["images"] = images
        else:
            merged.append(dict(turn))
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    return system, merged


def _in_a_tool_round(*turns: Turn) -> bool:
    """A tool's answer, or an assistant's turn that calls tools: each is a message of its own."""
    return any(turn["role"] == "tool" or turn.get("tool_calls") for turn in turns)


def _fold_system(system: str, turns: list[Turn]) -> list[Turn]:
    """For formats with no system role: put the system text in the first user turn."""
    if system and turns:
        turns = [{"role": "user", "content": f"{system}\n\n{turns[0]['content']}"}, *turns[1:]]
    return turns


def gemma(system: str, turns: list[Turn]) -> Prompt:
    parts = ["<bos>"]
    for turn in _fold_system(system, turns):
        role = "model" if turn["role"] == "assistant" else "user"
        parts.append(f"<start_of_turn>{role}\n{turn['content']}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return Prompt("".join(parts), ("<end_of_turn>",))


def llama2(system: str, turns: list[Turn]) -> Prompt:
    parts = []
    for index, turn in enumerate(turns):
        if turn["role"] == "user":
            content = turn["content"]
            if index == 0 and system:
                content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
            parts.append(f"<s>[INST] {content} [/INST]")
        else:
            parts.append(f" {turn['content']} </s>")
    return Prompt("".join(parts), ("</s>",))


def mistral(system: str, turns: list[Turn]) -> Prompt:
    parts = ["<s>"]
    for turn in _fold_system(system, turns):
        if turn["role"] == "user":
            parts.append(f"[INST] {turn['content']} [/INST]")
        else:
            parts.append(f"{turn['content']}</s>")
    return Prompt("".join(parts), ("</s>",))


def transcript(system: str, turns: list[Turn]) -> Prompt:
    """Falcon instruct's format, and the fallback for any model without one."""
    lines = [system] if system else []
    for turn in turns:
        speaker = "User" if turn["role"] == "user" else "Assistant"
        lines.append(f"{speaker}: {turn['content']}")
    lines.append("Assistant:")
    return Prompt("\n".join(lines), ("\nUser:",))


Formatter = Callable[[str, list[Turn]], Prompt]
FORMATS: dict[str, Formatter] = {
    "gemma": gemma,
    "llama-2": llama2,
    "mistral": mistral,
    "falcon": transcript,
    "transcript": transcript,
}
# (words that must all be in the lowercased model id, format name), first match wins.
FAMILIES: list[tuple[tuple[str, ...], str]] = [
    (("gemma",), "gemma"),
    (("llama-2", "chat"), "llama-2"),
    (("mistral", "instruct"), "mistral"),
    (("mixtral", "instruct"), "mistral"),
    (("falcon",), "falcon"),
]


def format_name(model_id: str) -> str:
    """The chat format of a model family, found from its id; the plain transcript otherwise."""
    name = hub_model_id(model_id).lower()
    for words, format_ in FAMILIES:
        if all(word in name for word in words):
            return format_
    return "transcript"


def format_prompt(model_id: str, turns: list[Turn], chat_format: str | None = None) -> Prompt:
    """The prompt for `turns` in the model's format, ending where the model answers."""
    system, alternating = alternate(turns)
    return FORMATS[chat_format or format_name(model_id)](system, alternating)


def strip_stops(text: str, stops: tuple[str, ...]) -> str:
    """Cut an answer at the first stop sequence that the server left in it."""
    for stop in stops:
        cut = text.find(stop)
        if cut != -1:
            text = text[:cut]
    return text


@dataclass(frozen=True)
class ChatTemplate:
    """A model's own Jinja chat template (from tokenizer_config.json or a server's /props)."""

    source: str
    bos_token: str = ""
    eos_token: str = ""

    def render(self, turns: list[Turn]) -> Prompt:
        """Render as transformers does: in a sandbox, ending with the generation prompt."""
        system, alternating = alternate(turns)
        template = _template_environment().from_string(self.source)
        values = {"bos_token": self.bos_token, "eos_token": self.eos_token, "add_generation_prompt": True}
        with_system = ([{"role": "system", "content": system}] if system else []) + alternating
        try:
            text = template.render(messages=with_system, **values)
        except TemplateError:
            if not system:
                raise
            # Templates without a system role (Gemma, Mistral v0.1/v0.2) refuse one: fold it into the first turn.
            text = template.render(messages=_fold_system(system, alternating), **values)
        return Prompt(text, (self.eos_token,) if self.eos_token else ())


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


@functools.cache
def _template_environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment


def _token_text(token: Any) -> str:
    """tokenizer_config.json gives special tokens as strings or as {"content": ...}."""
    if isinstance(token, dict):
        return str(token.get("content") or "")
    return str(token or "")


def chat_template_from(config: dict[str, Any]) -> ChatTemplate | None:
    """The template in a tokenizer_config.json (or /props) document, if it has one."""
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: take the default one
        source = next((t.get("template") for t in source if t.get("name") == "default"), None)
    if not isinstance(source, str) or not source.strip():
        return None
    return ChatTemplate(source, _token_text(config.get("bos_token")), _token_text(config.get("eos_token")))


def read_chat_template(path: str) -> ChatTemplate | None:
    """The chat template in a tokenizer_config.json file."""
    with open(path, encoding="utf-8") as file:
        return chat_template_from(json.load(file))


def fit_to_context(
    turns: list[Turn], context_tokens: int | None, reserve: int, count: Callable[[str], int] | None = None
) -> list[Turn]:
    """Drop the oldest turns until the prompt fits, always keeping the system prompt and the newest turn.
    `count` gives a turn's exact tokens (the server's tokenizer); it is asked only when the estimate says the
    conversation may not fit, so a short one costs no request."""
    if not context_tokens:
        return turns
    budget = context_tokens - reserve
    if sum(estimate_tokens(t["content"]) for t in turns) <= budget:
        return turns
    size = (lambda text: count(text) + TURN_MARKERS) if count else estimate_tokens
    system = [t for t in turns if t["role"] == "system"]
    rest = [t for t in turns if t["role"] != "system"]
    kept = rest[-1:]
    used = sum(size(t["content"]) for t in system + kept)
    for turn in reversed(rest[:-1]):
        used += size(turn["content"])
        if used > budget:
            break
        kept.insert(0, turn)
    return system + kept


TURN_MARKERS = 8  # tokens a chat format adds around each turn, at most


def estimate_tokens(text: str) -> int:
    """A cautious token count without the model's tokenizer: about 3 characters a token, plus the turn markers."""
    return len(text) // 3 + TURN_MARKERS
