"""Chat formats for text-generation backends: one small formatter per model family.

A turn is a dict {"role": "system" | "user" | "assistant", "content": str}.
`format_prompt(model_id, turns)` returns the prompt and the stop sequences
the model needs; the formats follow protocols.md section 4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Turn = dict[str, str]

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
    """Split off the system text and merge neighbours of one role so roles alternate."""
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system" and t["content"])
    merged: list[Turn] = []
    for turn in turns:
        if turn["role"] == "system":
            continue
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1] = {"role": turn["role"], "content": merged[-1]["content"] + "\n\n" + turn["content"]}
        else:
            merged.append(dict(turn))
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    return system, merged


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


# (words that must all be in the lowercased model id, formatter), first match wins.
FAMILIES: list[tuple[tuple[str, ...], Callable[[str, list[Turn]], Prompt]]] = [
    (("gemma",), gemma),
    (("llama-2", "chat"), llama2),
    (("mistral", "instruct"), mistral),
    (("mixtral", "instruct"), mistral),
    (("falcon",), transcript),
]


def formatter_for(model_id: str) -> Callable[[str, list[Turn]], Prompt]:
    """The chat format of a model family, or the plain transcript."""
    name = hub_model_id(model_id).lower()
    for words, formatter in FAMILIES:
        if all(word in name for word in words):
            return formatter
    return transcript


def format_prompt(model_id: str, turns: list[Turn]) -> Prompt:
    """The prompt for `turns` in the format of `model_id`, ending where the model answers."""
    system, alternating = alternate(turns)
    return formatter_for(model_id)(system, alternating)


def strip_stops(text: str, stops: tuple[str, ...]) -> str:
    """Cut an answer at the first stop sequence that the server left in it."""
    for stop in stops:
        cut = text.find(stop)
        if cut != -1:
            text = text[:cut]
    return text
