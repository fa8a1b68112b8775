"""What a new chat starts with: the model and settings its owner (an account, or a browser's session without
accounts) used last, or those they set as their default in Settings. One record per owner, as large as one
conversation's settings."""

from __future__ import annotations

import copy

from chatbot.chat import picker
from chatbot.stores.conversations import Conversation, Records, Store

KIND = "chat-defaults"
KEPT = ("model", "parameters", "system_prompt")  # a conversation's settings that a new chat takes on


def settings_of(conversation: Conversation) -> dict:
    """The conversation's model and settings that a new chat can take on."""
    return {key: copy.deepcopy(conversation.settings[key]) for key in KEPT if key in conversation.settings}


def used(store: Records, conversation: Conversation) -> None:
    """Remember the conversation's model and settings as those its owner used last."""
    record = store.load_record(KIND, conversation.owner) or {}
    store.save_record(KIND, conversation.owner, {**record, "last": settings_of(conversation)})


def set_default(store: Records, conversation: Conversation) -> None:
    """Every new chat of the owner starts with this conversation's model and settings."""
    record = store.load_record(KIND, conversation.owner) or {}
    store.save_record(KIND, conversation.owner, {**record, "default": settings_of(conversation)})


def has_default(store: Records, owner: str) -> bool:
    return bool((store.load_record(KIND, owner) or {}).get("default"))


def start(store: Store, conversation: Conversation, config: dict) -> None:
    """Give a new chat its owner's default, else what they used last."""
    record = store.load_record(KIND, conversation.owner) or {}
    apply(store, conversation, config, record.get("default") or record.get("last") or {})


def apply(store: Store, conversation: Conversation, config: dict, settings: dict) -> None:
    """Give a new chat these settings (settings_of another); a model its owner may no longer pick is left out
    (the chat starts with the first one then)."""
    chosen = copy.deepcopy(settings)
    if chosen.get("model") and picker.refusal(config, chosen["model"]):
        del chosen["model"]
    if chosen:
        conversation.settings.update(chosen)
        store.update_conversation(conversation)
