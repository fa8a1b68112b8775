"""OpenAI-compatible completions with the prompt in the model's own format (llama.cpp, vLLM, text-generation-webui).

The request is `{"model", "prompt", "max_tokens", "stop", ..., "stream": true}`; each event's
`choices[0].text` is text, the last has `finish_reason`; `usage` as in chat completions. The prompt may end
inside the answer, so an answer cut at the length limit goes on where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chatbot.services.backend import Backend, Parameters, Request
from chatbot.services.prompts import Turn
from chatbot.services.protocols.base import (
    Chunk,
    Finish,
    Protocol,
    Text,
    headers,
    openai_url,
    openai_usage,
    sampling,
    unfinished_choice,
)


class Completions(Protocol):
    name = "completions"
    takes_prompt = True

    def default_url(self, model_id: str) -> str:
        raise ValueError("the completions API needs the URL of your server (API_URL or the model's url)")

    def request(
        self,
        backend: Backend,
        parameters: Parameters,
        turns: list[Turn],
        continuing: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> Request:
        prompt = backend.prompt(turns)
        text = prompt.text.removeprefix("<bos>").removeprefix("<s>") + continuing  # the server adds the BOS token
        payload = {
            "model": backend.model_id,
            "prompt": text,
            "max_tokens": parameters.max_new_tokens,
            **sampling(parameters),
            "stop": list(prompt.stop),
            "stream": True,
        }
        return Request(
            url=openai_url(backend.url, "/completions"), payload=payload, headers=headers(backend), stop=prompt.stop
        )

    def chunks(self, event: dict[str, Any]) -> Iterator[Chunk]:
        for choice in (event.get("choices") or [])[:1]:
            if choice.get("text"):
                yield Text(choice["text"])
            if choice.get("finish_reason"):
                yield Finish.said(choice["finish_reason"])
        yield from openai_usage(event)

    def text_only(self, event: dict[str, Any]) -> str | None:
        text = (unfinished_choice(event) or {}).get("text")
        return text if type(text) is str and text else None
