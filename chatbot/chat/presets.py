"""Saved presets: a name, a model, a system prompt and parameters, that a new chat can start from. Each owner keeps
their own (at most MAX_OWN); an admin may share one with everyone. Records of the store, one per owner and one for
the shared ones, each as large as MAX_OWN conversations' settings at most."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.chat import defaults
from chatbot.stores.conversations import Conversation, Records, Store

KIND = "presets"
EVERYONE = "shared with everyone"  # the key of the shared ones (no owner id has spaces)
MAX_OWN = 20  # presets one owner keeps, and presets shared with everyone
NAME_CHARS = 60


@dataclass(frozen=True)
class Preset:
    name: str
    settings: dict  # a conversation's model, parameters and system prompt (chat/defaults.py's KEPT)
    shared: bool = False

    @property
    def key(self) -> str:
        """How a form names it: shared ones and one's own may have the same name."""
        return ("shared:" if self.shared else "own:") + self.name


def _kept(store: Records, key: str) -> dict[str, dict]:
    return (store.load_record(KIND, key) or {}).get("presets", {})


def save(store: Records, conversation: Conversation, name: str, share: bool = False) -> Preset:
    """Keep the conversation's model and settings under `name` (the owner's, or everyone's when `share`: only an
    admin may ask for that); one of the same name is replaced. ValueError says what is wrong."""
    name = " ".join(name.split())
    if not name or len(name) > NAME_CHARS:
        raise ValueError(f"give the preset a name of 1 to {NAME_CHARS} characters")
    key = EVERYONE if share else conversation.owner
    kept = _kept(store, key)
    if name not in kept and len(kept) >= MAX_OWN:
        raise ValueError(f"there are {MAX_OWN} presets already, the most kept: delete one first")
    kept[name] = defaults.settings_of(conversation)
    store.save_record(KIND, key, {"presets": kept})
    return Preset(name, kept[name], share)


def available(store: Records, owner: str) -> list[Preset]:
    """The owner's presets, then those shared with everyone, each by name."""
    own = [Preset(name, settings) for name, settings in sorted(_kept(store, owner).items())]
    shared = [Preset(name, settings, True) for name, settings in sorted(_kept(store, EVERYONE).items())]
    return own + shared


def start(store: Store, conversation: Conversation, config: dict, key: str) -> bool:
    """Give a new chat the settings of the preset `key` (Preset.key) its owner may use; whether there was one."""
    preset = next((preset for preset in available(store, conversation.owner) if preset.key == key), None)
    if preset is None:
        return False
    defaults.apply(store, conversation, config, preset.settings)
    return True


def delete(store: Records, owner: str, key: str, admin: bool = False) -> None:
    """Forget one of the owner's presets, or (an admin) one shared with everyone."""
    shared, _, name = key.partition(":")
    record_key = EVERYONE if shared == "shared" and admin else owner if shared == "own" else None
    if record_key is None:
        return
    kept = _kept(store, record_key)
    if kept.pop(name, None) is not None:
        store.save_record(KIND, record_key, {"presets": kept})
