"""An answer's reasoning while it is written, and after.

While an answer streams, its reasoning is written into the same growing content as the answer, between two
private-use characters (START and END), so that it is saved and followed by other tabs, workers and hosts
exactly like the answer, at the same cost. When the answer ends it is taken out: the content keeps the answer
alone (what the model sees of the history, what is searched) and `meta["reasoning"]` the thinking.
"""

from __future__ import annotations

from chatbot.services.thinking import TagSplitter
from chatbot.stores.conversations import Message

START, END = "\ue000", "\ue001"


def strip_markers(text: str) -> str:
    """Text from a model never carries the markers themselves."""
    return text.replace(START, "").replace(END, "")


def split(content: str) -> tuple[str, str]:
    """(reasoning, answer) of a content being written."""
    reasoning: list[str] = []
    answer: list[str] = []
    for inside, text in router().feed(content):
        (reasoning if inside else answer).append(text)
    return "".join(reasoning), "".join(answer)


def router() -> TagSplitter:
    """Follows the content as it grows: which new parts are reasoning, which are answer."""
    return TagSplitter(START, END)


def thought_for(seconds: float | None) -> str:
    """The folded reasoning's label."""
    if seconds is None:
        return "Reasoning"
    return "Thought for a moment" if seconds < 1 else f"Thought for {round(seconds)} s"


def label(message: Message) -> str:
    """The reasoning's label on an answer being written: "Thinking…" until its reasoning has ended, then how long
    it took (when the store says)."""
    content = message.content
    if START not in content or content.rfind(START) > content.rfind(END):
        return "Thinking…"
    return thought_for(message.meta.get("reasoning_seconds"))


def settle(message: Message) -> None:
    """Take the reasoning out of an answer that has ended (kept with what an earlier part had thought)."""
    reasoning, answer = split(message.content)
    message.content = answer
    thought = "\n\n".join(part for part in (message.meta.get("reasoning", ""), reasoning.strip()) if part)
    if thought:
        message.meta["reasoning"] = thought
