"""The Hugging Face text-generation task (the user's notes): TGI, Inference Endpoints, the old hf-inference route.

The app writes the prompt in the model's chat format; the request is `{"inputs", "parameters", "options",
"stream"}` (docs/protocols.md). The stream is TGI's: one `data:` event per token, the last one with
`generated_text` and, when asked, `details` (`finish_reason`, `generated_tokens`); no `[DONE]`. A special
token (`<end_of_turn>`, `</s>`) is never text. A whole answer is `[{"generated_text": ...}]` or the object alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chatbot.services import prompts
from chatbot.services.backend import Backend, Parameters, Request
from chatbot.services.prompts import Turn
from chatbot.services.protocols.base import Chunk, Finish, Protocol, Text, Usage, headers

HF_TEXT_GENERATION_URL = "https://router.huggingface.co/hf-inference/models/{model_id}"


class TextGeneration(Protocol):
    name = "text-generation"
    takes_prompt = True
    openai_compatible = False
    counts_prompt = False  # details count the answer's tokens alone

    def model_id(self, given: str) -> str:
        return prompts.hub_model_id(given)  # the notes' short ids are not Hub repositories

    def default_url(self, model_id: str) -> str:
        return HF_TEXT_GENERATION_URL.format(model_id=model_id)

    def request(
        self,
        backend: Backend,
        parameters: Parameters,
        turns: list[Turn],
        continuing: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> Request:
        prompt = backend.prompt(turns)
        generation: dict[str, Any] = {
            "max_new_tokens": parameters.max_new_tokens,
            "do_sample": parameters.do_sample,
            "return_full_text": False,
            "stop": list(prompt.stop),
        }
        if parameters.do_sample:
            generation["temperature"] = parameters.temperature
            generation["top_p"] = parameters.top_p
        payload = {
            "inputs": prompt.text + continuing,  # a prompt that ends inside the answer: the model goes on
            "parameters": generation,
            "options": {"wait_for_model": backend.wait_for_model, "use_cache": False},
            "stream": True,
        }
        sent = headers(backend)
        sent["x-wait-for-model"] = "true" if backend.wait_for_model else "false"
        sent["x-use-cache"] = "false"
        return Request(url=backend.url, payload=payload, headers=sent, stop=prompt.stop)

    def chunks(self, event: dict[str, Any]) -> Iterator[Chunk]:
        if "token" in event:
            token = event["token"] or {}
            if text := ("" if token.get("special") else token.get("text") or ""):
                yield Text(text)
            details = event["details"] if isinstance(event.get("details"), dict) else {}
            if event.get("generated_text") is not None or details:
                if details.get("generated_tokens"):
                    yield Usage.said(completion_tokens=details["generated_tokens"])
                yield Finish.said(details.get("finish_reason"))
        elif "generated_text" in event:  # a whole, non-streamed answer
            yield Text(event["generated_text"] or "")
            yield Finish("stop")

    def text_only(self, event: dict[str, Any]) -> str | None:
        token = event.get("token")
        if type(token) is not dict or token.get("special") or event.get("details"):
            return None
        text = token.get("text")
        return text if type(text) is str and text and event.get("generated_text") is None else None
