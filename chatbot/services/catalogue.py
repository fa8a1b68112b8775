"""The live catalogue of models: `GET {base}/models` of the Hugging Face router or any OpenAI-compatible server.

The router answers without a token with each model's providers (`provider`, `status` live or error,
`context_length`, `pricing` per million tokens, `supports_tools`) and `architecture.input_modalities`; a local
server (llama.cpp, vLLM, Ollama, TGI, text-generation-webui) answers at least `{"data": [{"id": ...}]}`.
Asked at most once per CATALOGUE_SECONDS per server, kept on disk so the picker works offline afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chatbot.services.backend import Backend
from chatbot.services.errors import InferenceError
from chatbot.services.protocols import PROTOCOLS

CATALOGUE_SECONDS = 600.0  # how long a catalogue is taken as it is before it is asked again
ASK_TIMEOUT = 3.0
SUGGESTIONS = 5


@dataclass(frozen=True)
class Offer:
    """One provider's offer of a model."""

    provider: str
    live: bool
    context_length: int | None = None
    price_in: float | None = None  # per million tokens
    price_out: float | None = None


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    offers: tuple[Offer, ...] = ()
    input_modalities: tuple[str, ...] = ("text",)
    listed_only: bool = field(default=False, compare=False)  # a local server's bare list: no providers to judge

    @property
    def live(self) -> bool:
        return self.listed_only or any(offer.live for offer in self.offers)

    @property
    def context_length(self) -> int | None:
        lengths = [offer.context_length for offer in self.offers if offer.live and offer.context_length]
        return max(lengths) if lengths else None

    def describe(self) -> str:
        """What a user needs to choose it: context, providers, the lowest price."""
        parts = []
        if self.context_length:
            parts.append(f"context {self.context_length:,} tokens")
        providers = [offer.provider for offer in self.offers if offer.live]
        if providers:
            parts.append(", ".join(providers))
        prices = [offer for offer in self.offers if offer.live and offer.price_in is not None]
        if prices:
            cheapest = min(prices, key=lambda offer: (offer.price_in or 0) + (offer.price_out or 0))
            parts.append(f"${cheapest.price_in:g} / ${cheapest.price_out or 0:g} per M tokens in / out")
        if "image" in self.input_modalities:
            parts.append("images")
        return " · ".join(part for part in parts if part)


def parse(body: Any) -> list[CatalogueModel]:
    """The models of a `/models` answer; ValueError when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("not a model list")
    models = []
    for item in body["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        providers = item.get("providers")
        offers = tuple(_offer(p) for p in providers if isinstance(p, dict)) if isinstance(providers, list) else ()
        modalities = (item.get("architecture") or {}).get("input_modalities") or ["text"]
        models.append(CatalogueModel(item["id"], offers, tuple(modalities), listed_only=providers is None))
    return models


def _offer(provider: dict[str, Any]) -> Offer:
    pricing = provider.get("pricing") if isinstance(provider.get("pricing"), dict) else {}
    return Offer(
        provider=str(provider.get("provider") or "?"),
        live=provider.get("status") == "live",
        context_length=provider.get("context_length") if isinstance(provider.get("context_length"), int) else None,
        price_in=pricing.get("input") if isinstance(pricing.get("input"), int | float) else None,
        price_out=pricing.get("output") if isinstance(pricing.get("output"), int | float) else None,
    )


_known: dict[str, tuple[float, list[CatalogueModel]]] = {}
_lock = threading.Lock()


def forget() -> None:
    with _lock:
        _known.clear()


def cache_folder() -> Path:
    return Path(os.environ.get("CHAT_HUB_CACHE") or Path.home() / ".cache" / "chatbot" / "hub") / "catalogue"


def base_of(url: str) -> str:
    """The OpenAI-compatible base of a chat or completions URL."""
    return url.rstrip("/").removesuffix("/chat/completions").removesuffix("/completions")


def models(url: str, token: str | None = None) -> list[CatalogueModel]:
    """The catalogue of the server at `url` (its OpenAI-compatible base, ".../v1"); empty when it has none
    and none was kept from before."""
    base_url = base_of(url)
    with _lock:
        known = _known.get(base_url)
    if known and time.monotonic() - known[0] < CATALOGUE_SECONDS:
        return known[1]
    found = _ask(base_url, token)
    with _lock:
        _known[base_url] = (time.monotonic(), found)
    return found


def _ask(base_url: str, token: str | None) -> list[CatalogueModel]:
    kept = cache_folder() / (hashlib.sha256(base_url.encode()).hexdigest()[:16] + ".json")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(base_url.rstrip("/") + "/models", headers=headers, timeout=ASK_TIMEOUT)
        body = response.json() if response.ok else None
        found = parse(body)
    except (requests.RequestException, ValueError):
        try:
            return parse(json.loads(kept.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return []
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(body), encoding="utf-8")
    return found


def find(catalogue: list[CatalogueModel], model_id: str) -> CatalogueModel | None:
    """The model as the catalogue lists it; a router's `:policy` or `:provider` suffix is not part of the id."""
    base = model_id.split(":", 1)[0].lower()
    return next((model for model in catalogue if model.id.lower() == base), None)


def similar(catalogue: list[CatalogueModel], model_id: str) -> list[str]:
    """Live models of the same family (name stem or maker), then of about the same size."""
    base = model_id.split(":", 1)[0].lower()
    maker, _, name = base.rpartition("/")
    stem = re.match(r"[a-z]+", name)
    size = re.search(r"(\d+(?:\.\d+)?)b\b", name)
    live = [model for model in catalogue if model.live and model.id.lower() != base]

    def score(model: CatalogueModel) -> tuple[int, str]:
        other_maker, _, other = model.id.lower().rpartition("/")
        same_family = bool(stem and other.startswith(stem.group(0))) or (maker and other_maker == maker)
        same_size = bool(size and re.search(rf"\b{re.escape(size.group(1))}b\b", other.replace("-", " ")))
        return (0 if same_family else 1) + (0 if same_size else 1), model.id

    ranked = sorted(live, key=score)
    return [model.id for model in ranked if score(model)[0] < 2][:SUGGESTIONS]


def with_alternatives(error: InferenceError, backend: Backend) -> InferenceError:
    """A model the server does not serve: name live ones like it from its catalogue."""
    if error.kind != "not_found" or not PROTOCOLS[backend.api].openai_compatible:
        return error
    alternatives = similar(models(backend.url, backend.token), backend.model_id)
    if not alternatives:
        return error
    error.hint = (
        f"Live models like it: {', '.join(alternatives)}. Pick one in the model picker, or set MODEL_ID in .env."
    )
    return error
