"""Titles written by the model: after a chat's first answer, one short request, not streamed, asks the same
model for a few words. Optional per model (`titles` in MODELS, else MODEL_TITLES; off for the built-in model);
any failure keeps the title made from the first message."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from markdown_it import MarkdownIt
from markdown_it.token import Token

from chatbot.services import discovery, inference
from chatbot.services.errors import InferenceError
from chatbot.services.protocols import Text

log = logging.getLogger(__name__)

ASK = (
    "Write a title of at most six words for the conversation below. Answer with the title alone: no quotes, "
    "no punctuation at the end.\n\nUser: {question}\n\nAssistant: {answer}"
)
UNTITLED = "New chat"  # a chat's title until its first message names it (Store.create_conversation's default)
TITLE_LENGTH = 60  # characters of a title made from the first message
SHOWN = 1500  # characters of the question and of the answer the model reads for it
TITLE_TOKENS = 24
MARKDOWN = MarkdownIt("commonmark", {"html": False})
LEFTOVER_MARKS = re.compile(r"\*\*|__|~~|`+|(?<!\w)[*_](?=\w)|(?<=\w)[*_](?!\w)")  # left unclosed, or strikethrough
SPOKEN = {"text", "code_inline", "image"}  # inline tokens whose content is words (an image's is its alt text)


def model_title(backend: inference.Backend, parameters: inference.Parameters, question: str, answer: str) -> str:
    """A title for the chat in the model's words; "" when it did not give one (the caller keeps its own)."""
    turns = [{"role": "user", "content": ASK.format(question=question[:SHOWN], answer=answer[:SHOWN])}]
    asked = replace(parameters, max_new_tokens=TITLE_TOKENS, do_sample=False)
    backend = discovery.with_server_facts(backend)
    request = inference.build_request(backend, asked, turns)
    payload = {key: value for key, value in request.payload.items() if key != "stream_options"}
    request = replace(request, payload={**payload, "stream": False})  # one answer, whole
    try:
        said = "".join(chunk.text for chunk in inference.stream_chunks(request, backend) if isinstance(chunk, Text))
    except InferenceError as error:
        log.info("no title from the model: %s", error.message)
        return ""
    return tidy(said)


def tidy(said: str) -> str:
    """The first line of what the model said, without quotes, markdown marks, a "Title:" label or end stops."""
    line = next((line for line in said.strip().splitlines() if line.strip()), "")
    line = re.sub(r"^\W*title\s*:\s*", "", plain_text(line), flags=re.IGNORECASE)
    line = line.strip(" \t\"'`*#_“”‘’.")
    return " ".join(line.split())[:80]


def title_from(text: str) -> str:
    """A conversation's title: the start of its first message, on one line, as plain text."""
    words = " ".join(plain_text(text).split())
    return words if len(words) <= TITLE_LENGTH else words[: TITLE_LENGTH - 1].rstrip() + "…"


def plain_text(markdown: str) -> str:
    """The words of `markdown` without its marks: emphasis, code marks, links (their text), headings, lists."""
    words = []
    for block in MARKDOWN.parse(markdown):
        if block.type == "inline":
            words.append("".join(_spoken(token) for token in block.children or []))
        elif block.type in ("fence", "code_block"):
            words.append(block.content)
    return LEFTOVER_MARKS.sub("", " ".join(words))


def _spoken(token: Token) -> str:
    """An inline token's words; a line break is a space, a mark nothing."""
    return token.content if token.type in SPOKEN else " " if "break" in token.type else ""
