"""The wire protocols the chat speaks, one class each; adding one is a file, an entry here and a fake."""

from chatbot.services.protocols.base import (
    ARGUMENTS_CHARS,
    CALLS_HEARD,
    NAME_LENGTH,
    PROVIDER_CHARS,
    Chunk,
    Finish,
    Protocol,
    Provider,
    Reasoning,
    Text,
    ToolCall,
    ToolCallPiece,
    ToolCalls,
    Usage,
)
from chatbot.services.protocols.chat_completions import ChatCompletions
from chatbot.services.protocols.completions import Completions
from chatbot.services.protocols.text_generation import TextGeneration

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (TextGeneration(), ChatCompletions(), Completions())}

__all__ = [
    "ARGUMENTS_CHARS",
    "CALLS_HEARD",
    "NAME_LENGTH",
    "PROVIDER_CHARS",
    "PROTOCOLS",
    "Chunk",
    "Finish",
    "Protocol",
    "Provider",
    "Reasoning",
    "Text",
    "ToolCall",
    "ToolCallPiece",
    "ToolCalls",
    "Usage",
]
