"""OpenAI-compatible chat completions: the Hugging Face router, TGI, vLLM, llama.cpp, text-generation-webui, Ollama.

The server applies the model's chat template; the request is `{"model", "messages", "max_tokens", ...,
"stream": true}` (docs/protocols.md). The stream is `chat.completion.chunk` events whose
`choices[0].delta.content` is text (the first may be null or empty) and whose last choice has `finish_reason`;
`usage` comes in the last chunk or in one of its own with `"choices": []`; then `[DONE]`. A whole answer has
`choices[0].message`. Going on with an answer cut at the length limit is asked for in words: a chat API always
starts a new message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chatbot.services import prompts
from chatbot.services.backend import Backend, Parameters, Request
from chatbot.services.prompts import Turn
from chatbot.services.protocols.base import (
    Chunk,
    Finish,
    Protocol,
    Reasoning,
    Text,
    ToolCallPiece,
    headers,
    openai_url,
    openai_usage,
    sampling,
    unfinished_choice,
)

HF_ROUTER_URL = "https://router.huggingface.co/v1"
# Where servers put the model's thinking: vLLM, Ollama, Groq and Cerebras through the router; llama.cpp and
# DeepSeek-style providers; some others. Inline <think> tags in the content are split off by inference.py.
REASONING_FIELDS = ("reasoning", "reasoning_content", "reasoning_text")
CONTINUE_ASK = "Continue exactly where your last answer stopped, without repeating any of it."


class ChatCompletions(Protocol):
    name = "chat"
    takes_tools = True

    def default_url(self, model_id: str) -> str:
        return HF_ROUTER_URL

    def request(
        self,
        backend: Backend,
        parameters: Parameters,
        turns: list[Turn],
        continuing: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> Request:
        if continuing:
            turns = [*turns, {"role": "assistant", "content": continuing}, {"role": "user", "content": CONTINUE_ASK}]
        system, alternating = prompts.alternate(turns)
        messages = ([{"role": "system", "content": system}] if system else []) + [_message(t) for t in alternating]
        payload = {
            "model": backend.model_id,
            "messages": messages,
            "max_tokens": parameters.max_new_tokens,
            **sampling(parameters),
            "stream": True,
            "stream_options": {"include_usage": True},  # the server's own token counts, in the last chunk
        }
        if parameters.reasoning_effort:  # "none" turns thinking off on llama.cpp and Ollama
            payload["reasoning_effort"] = parameters.reasoning_effort
        if tools:
            payload["tools"] = tools
        return Request(url=openai_url(backend.url, "/chat/completions"), payload=payload, headers=headers(backend))

    def chunks(self, event: dict[str, Any]) -> Iterator[Chunk]:
        for choice in (event.get("choices") or [])[:1]:
            part = choice.get("delta") or choice.get("message") or {}
            for name in REASONING_FIELDS:
                if isinstance(part.get(name), str) and part[name]:
                    yield Reasoning(part[name])
                    break
            if part.get("content"):
                yield Text(part["content"])
            yield from _tool_call_pieces(part.get("tool_calls"))
            if choice.get("finish_reason"):
                yield Finish.said(choice["finish_reason"])
        yield from openai_usage(event)

    def text_only(self, event: dict[str, Any]) -> str | None:
        choice = unfinished_choice(event)
        part = choice and (choice.get("delta") or choice.get("message"))
        if type(part) is not dict or part.get("tool_calls") or any(part.get(name) for name in REASONING_FIELDS):
            return None
        content = part.get("content")
        return content if type(content) is str and content else None


def _tool_call_pieces(calls: Any) -> Iterator[ToolCallPiece]:
    """`delta.tool_calls` (or a whole message's): a piece of each call, by its index (a server that leaves the
    index out numbers the calls by their place)."""
    for place, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        index = call.get("index")
        arguments = function.get("arguments")
        yield ToolCallPiece(
            index if isinstance(index, int) else place,
            _text(call.get("id")),
            _text(function.get("name")),
            arguments if isinstance(arguments, str) else json.dumps(arguments) if arguments else "",
        )


def _text(value: Any) -> str | None:
    """A call's id or name: text, else None (a server's number or list has no length to bound it by)."""
    return value if isinstance(value, str) and value else None


def _message(turn: Turn) -> dict[str, Any]:
    """A turn as a chat message: its text alone, or with images as content parts (its text first, when it has
    any, then each image); an assistant's tool calls, and a tool's answer to one, as they came."""
    if turn["role"] == "tool":
        return {"role": "tool", "tool_call_id": turn["tool_call_id"], "content": turn["content"]}
    if turn.get("tool_calls"):
        return {"role": "assistant", "content": turn["content"] or None, "tool_calls": turn["tool_calls"]}
    if not turn.get("images"):
        return {"role": turn["role"], "content": turn["content"]}
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn["content"]}] if turn["content"] else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in turn["images"]]
    return {"role": turn["role"], "content": parts}
