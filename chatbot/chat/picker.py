"""The models a user may pick: the configured ones, and the live catalogue of their OpenAI-compatible servers.

A configured model keeps its name and settings; a catalogue model is picked by its id and talks to the server
of the configured model whose catalogue lists it, with that model's settings. The catalogue also gives the
context length (which drives trimming) and tells when a configured model is not live. A page lists the first
LISTED choices; typing in the picker searches them all (`matching`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from chatbot.chat import tool_access
from chatbot.local_model.server import MODEL_ALIAS, MODEL_NAME
from chatbot.services import catalogue
from chatbot.services.models import ModelSpec
from chatbot.services.protocols import PROTOCOLS
from chatbot.services.protocols.chat_completions import HF_ROUTER_URL

LISTED = 100  # choices a page's picker lists at once
OFFERED = 3  # names offered instead of one that cannot be picked
EXAMPLES = (  # what an empty chat offers to start with: short, and within reach of a tiny model
    "Explain how a rainbow forms, in three sentences.",
    "Write a haiku about the sea.",
    "Give me three ideas for a rainy Sunday.",
    "Write a Python function that reverses a string.",
)


@dataclass(frozen=True)
class Choice:
    """One entry of the picker: what is sent back when it is picked, and what the user reads to choose."""

    name: str
    about: str
    spec: ModelSpec
    listing: catalogue.CatalogueModel | None = None  # as its server's live catalogue lists it, when it does
    configured: bool = False  # one of MODELS (or MODEL_ID), not found in a catalogue

    @property
    def maker(self) -> str:
        return self.listing.maker if self.listing else self.spec.id.rpartition("/")[0]

    def facts(self) -> list[str]:
        """What the menu says of it: maker, context length, price, providers, and what it can do (its catalogue's
        word on tools overruled by `"tools"` in MODELS)."""
        listing = self.listing
        context = self.spec.context_length
        can = [word for word in listing.can if word != "tools" or self.spec.tools is None] if listing else []
        said = [
            f"by {self.maker}" if self.maker else "",
            f"context {context:,} tokens" if context else "",
            *([listing.price, listing.providers] if listing else []),
            *can,
            "tools" if self.spec.tools else "",
        ]
        return [fact for fact in said if fact]

    @property
    def built_in(self) -> bool:
        """Whether it is the tiny model the chat runs by itself when given no other (`make run`)."""
        return self.spec.id == MODEL_ALIAS

    def introduction(self) -> str:
        """One line on what it is, for the greeting of an empty chat."""
        if self.built_in:
            return f"{MODEL_NAME}: a tiny model (135 million parameters) running on this machine, to try the chat out."
        named = self.spec.id if self.spec.id != self.name else ""
        return " · ".join([named, *self.facts()] if named else self.facts())


@dataclass(frozen=True)
class Group:
    """Models of the menu under one heading: the chat's own, or one maker's."""

    heading: str
    choices: list[Choice]


def _server(spec: ModelSpec) -> str | None:
    """The OpenAI-compatible server whose catalogue can be asked for this model, if any."""
    if not PROTOCOLS[spec.api].openai_compatible:
        return None
    return spec.url or HF_ROUTER_URL


def _catalogue(spec: ModelSpec, config: dict, wait: float = catalogue.FIRST_WAIT) -> list[catalogue.CatalogueModel]:
    server = _server(spec)
    return catalogue.models(server, config.get("HF_API_TOKEN"), wait) if server else []


def for_account(config: dict, account) -> dict:
    """The configuration as one account sees it: only the models the admin lets it pick and the MCP servers it
    may use, when they say."""
    if account is None:
        return config
    seen = {**config, "TOOL_SERVERS": tool_access.for_account(config.get("TOOL_SERVERS", ()), account.tool_servers)}
    return {**seen, "ALLOWED_MODELS": tuple(account.models)} if account.models else seen


def choices(config: dict) -> list[Choice]:
    """The configured models first, then the live catalogue models of their servers, each once (only the
    ALLOWED_MODELS, when an account may pick only those)."""
    picked = {spec.name: _configured(spec, config) for spec in config["MODELS"]}
    for spec in config["MODELS"]:
        for model in _catalogue(spec, config):
            if model.live and model.id not in picked:
                picked[model.id] = _listed(spec, model)
    allowed = config.get("ALLOWED_MODELS")
    return [choice for name, choice in picked.items() if not allowed or name in allowed]


def refusal(config: dict, name: str) -> str | None:
    """Why the model `name` cannot be picked, in words with the closest names that can (None: it can). Nothing
    else is picked in its place: a name typed wrong is said, never guessed."""
    offered = choices(config)
    if any(choice.name == name for choice in offered):
        return None
    names = [choice.name for choice in offered]
    everyone = {**config, "ALLOWED_MODELS": ()}
    if config.get("ALLOWED_MODELS") and any(choice.name == name for choice in choices(everyone)):
        return f"Your account may not use the model {name} (the admin chose which it may): pick {_one_of(names)}."
    return f"There is no model named {name} to pick, so nothing was sent. {_closest(names, name)}"


def _closest(names: list[str], typed: str) -> str:
    """The names most like what was typed (those that hold it first), or the first ones when none is like it."""
    lowered = {name.lower(): name for name in names}
    holding = [name for name in names if typed.lower() in name.lower()]
    alike = difflib.get_close_matches(typed.lower(), lowered, OFFERED, cutoff=0.4)
    close = list(dict.fromkeys([*holding, *(lowered[name] for name in alike)]))[:OFFERED]
    if close:
        return f"Did you mean {_one_of(close)}?"
    return f"Pick {_one_of(names[:OFFERED])} (type in the model box to search them all)."


def _one_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def matching(choices: list[Choice], typed: str = "") -> list[Choice]:
    """The first LISTED choices whose name holds `typed` (in any case)."""
    typed = typed.strip().lower()
    return [choice for choice in choices if typed in choice.name.lower()][:LISTED]


def menu(choices: list[Choice], typed: str = "") -> list[Group]:
    """The menu: of the first LISTED choices that hold `typed`, the configured models first, then the live
    catalogue's grouped by maker."""
    listed = matching(choices, typed)
    own = [choice for choice in listed if choice.configured]
    makers: dict[str, list[Choice]] = {}
    for choice in listed:
        if not choice.configured:
            makers.setdefault(choice.maker or "Other makers", []).append(choice)
    groups = [Group("This chat's models", own)] if own else []
    return groups + [Group(maker, makers[maker]) for maker in sorted(makers, key=str.lower)]


def choice(config: dict, name: str | None) -> Choice:
    """The model with that name; the first configured one when the name is unknown or empty (the first
    allowed one, for an account that may pick only some). Looked up, not built with every other choice: this
    runs for every answer."""
    allowed = config.get("ALLOWED_MODELS")
    if allowed and name not in allowed:
        name = allowed[0]
    for spec in config["MODELS"]:
        if spec.name == name:
            return _configured(spec, config)
    for spec in config["MODELS"]:
        model = next((model for model in _catalogue(spec, config) if model.live and model.id == name), None)
        if model is not None:
            return _listed(spec, model)
    return _configured(config["MODELS"][0], config)


def _configured(spec: ModelSpec, config: dict) -> Choice:
    """A configured model, with the context length its catalogue gives when the configuration gives none."""
    known = _catalogue(spec, config)
    listed = catalogue.find(known, spec.id)
    about = listed.describe() if listed and listed.live else "not served now: pick a live model" if known else ""
    if listed is not None and listed.context_length and not spec.context_length:
        spec = dataclasses.replace(spec, context_length=listed.context_length)
    if listed is not None and spec.images is None:
        spec = dataclasses.replace(spec, images="image" in listed.input_modalities)
    return Choice(spec.name, about, spec, listed if listed and listed.live else None, configured=True)


def _listed(server_spec: ModelSpec, model: catalogue.CatalogueModel) -> Choice:
    """A catalogue model, asked on the server (and with the settings) of the configured model that lists it."""
    spec = dataclasses.replace(
        server_spec,
        id=model.id,
        name=model.id,
        context_length=model.context_length,
        chat_format=None,
        images="image" in model.input_modalities,
    )
    return Choice(model.id, model.describe(), spec, model)


def not_live(config: dict) -> list[str]:
    """For each configured model that its server's catalogue lists as not live (or not at all): one line that
    says so and names live models like it. A catalogue not known yet is waited for (as long as it may take)."""
    lines = []
    for spec in config["MODELS"]:
        listed = _catalogue(spec, config, wait=catalogue.ASK_SECONDS)
        if not listed:
            continue  # no catalogue (offline, or a server without one): nothing to judge by
        model = catalogue.find(listed, spec.id)
        if model is not None and model.live:
            continue
        where = "its providers all report an error" if model else "it is not in the catalogue"
        alternatives = catalogue.similar(listed, spec.id)
        like = f" Live models like it: {', '.join(alternatives)}." if alternatives else ""
        lines.append(f"The model {spec.id} is not served at {_server(spec)} now ({where}).{like}")
    return lines
