"""The live catalogue of models: `GET {base}/models` of the Hugging Face router or any OpenAI-compatible server.

The router answers without a token with each model's providers (`provider`, `status` live or error,
`context_length`, `pricing` per million tokens, `supports_tools`, and `supports_reasoning` where a provider says
it), `owned_by` and `architecture.input_modalities`; a local
server (llama.cpp, vLLM, Ollama, TGI, text-generation-webui) answers at least `{"data": [{"id": ...}]}`.
It is data from another server, read within bounds: at most MAX_BYTES in ASK_SECONDS, MAX_MODELS models, names of
MAX_NAME characters; an entry that cannot be read is left out (and counted in the log). It is asked in the
background, at most once per CATALOGUE_SECONDS per server, and kept on disk so the picker works offline
afterwards; whoever needs it meanwhile gets what is known (or waits a moment for a server's first answer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from chatbot.services.backend import Backend
from chatbot.services.errors import InferenceError
from chatbot.services.protocols import PROTOCOLS
from chatbot.services.remembered import Remembered

log = logging.getLogger(__name__)

CATALOGUE_SECONDS = 600.0  # how long a catalogue is taken as it is before it is asked again
ASK_TIMEOUT = 3.0  # seconds to connect, and between two reads
ASK_SECONDS = 10.0  # to read the whole answer: a server that drips it is cut off
FIRST_WAIT = 1.0  # a page waits this long after a server is first asked, then goes on without its catalogue
READ_SIZE = 65536
MAX_BYTES = 4 * 1024 * 1024  # of an answer (the router's lists a few hundred models in well under 1 MB)
MAX_MODELS = 1000
MAX_NAME = 200  # characters of a model's id or a provider's name
MAX_OFFERS = 50  # providers of one model
SHOWN_PROVIDERS = 5  # named in a model's description
SUGGESTIONS = 5


@dataclass(frozen=True)
class Offer:
    """One provider's offer of a model."""

    provider: str
    live: bool
    context_length: int | None = None
    price_in: float | None = None  # per million tokens
    price_out: float | None = None
    tools: bool = False  # it says it calls tools
    thinks: bool = False  # it says the model reasons before it answers


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    offers: tuple[Offer, ...] = ()
    input_modalities: tuple[str, ...] = ("text",)
    listed_only: bool = field(default=False, compare=False)  # a local server's bare list: no providers to judge
    owned_by: str = ""

    @property
    def live(self) -> bool:
        return self.listed_only or any(offer.live for offer in self.offers)

    @property
    def context_length(self) -> int | None:
        lengths = [offer.context_length for offer in self.offers if offer.live and offer.context_length]
        return max(lengths) if lengths else None

    @property
    def maker(self) -> str:
        """Who made it: the catalogue's owner, else the organisation in its id."""
        return self.owned_by or self.id.rpartition("/")[0]

    @property
    def providers(self) -> str:
        providers = [offer.provider for offer in self.offers if offer.live]
        more = len(providers) - SHOWN_PROVIDERS
        return ", ".join(providers[:SHOWN_PROVIDERS]) + (f" and {more} more" if more > 0 else "")

    @property
    def price(self) -> str:
        """The lowest price of its live offers, in words ("" when none says)."""
        prices = [offer for offer in self.offers if offer.live and offer.price_in is not None]
        if not prices:
            return ""
        cheapest = min(prices, key=lambda offer: (offer.price_in or 0) + (offer.price_out or 0))
        return f"${cheapest.price_in:g} / ${cheapest.price_out or 0:g} per M tokens in / out"

    @property
    def can(self) -> list[str]:
        """What it can do beyond text, where the catalogue says so: "images", "thinks", "tools"."""
        live = [offer for offer in self.offers if offer.live]
        said = {
            "images": "image" in self.input_modalities,
            "thinks": any(offer.thinks for offer in live),
            "tools": any(offer.tools for offer in live),
        }
        return [name for name, true in said.items() if true]

    def describe(self) -> str:
        """What a user needs to choose it: context, providers, the lowest price."""
        context = f"context {self.context_length:,} tokens" if self.context_length else ""
        images = "images" if "image" in self.input_modalities else ""
        return " · ".join(part for part in (context, self.providers, self.price, images) if part)


def parse(body: Any, source: str = "the server") -> list[CatalogueModel]:
    """The models of a `/models` answer (at most MAX_MODELS), leaving out the entries that cannot be read and
    saying how many in the log; ValueError when it is not a model list at all."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("not a model list")
    models: list[CatalogueModel] = []
    unreadable = beyond = 0
    for item in body["data"]:
        if len(models) == MAX_MODELS:
            beyond += 1
            continue
        try:
            models.append(_model(item))
        except ValueError:
            unreadable += 1
    if unreadable:
        log.warning("The model catalogue of %s: %d entries could not be read and are left out", source, unreadable)
    if beyond:
        log.warning("The model catalogue of %s: %d entries past the first %d are left out", source, beyond, MAX_MODELS)
    return models


def _model(item: Any) -> CatalogueModel:
    """One entry of the list; ValueError when it is not as documented."""
    if not isinstance(item, dict) or not _is_name(item.get("id")):
        raise ValueError("no id, or not a name")
    providers = item.get("providers")
    if providers is not None and not (isinstance(providers, list) and len(providers) <= MAX_OFFERS):
        raise ValueError("providers is not a short list")
    architecture = item.get("architecture") or {}
    modalities = (architecture.get("input_modalities") or ["text"]) if isinstance(architecture, dict) else None
    if not isinstance(modalities, list) or not all(isinstance(modality, str) for modality in modalities):
        raise ValueError("input_modalities is not a list of names")
    offers = tuple(_offer(provider) for provider in providers or ())
    owned_by = str(item["owned_by"]) if _is_name(item.get("owned_by")) else ""
    return CatalogueModel(item["id"], offers, tuple(modalities), listed_only=providers is None, owned_by=owned_by)


def _offer(provider: Any) -> Offer:
    if not isinstance(provider, dict) or not _is_name(provider.get("provider", "?")):
        raise ValueError("a provider without a name")
    pricing = provider.get("pricing")
    pricing = pricing if isinstance(pricing, dict) else {}
    return Offer(
        provider=provider.get("provider", "?"),
        live=provider.get("status") == "live",
        context_length=_number(provider.get("context_length"), int),
        price_in=_number(pricing.get("input"), int | float),
        price_out=_number(pricing.get("output"), int | float),
        tools=provider.get("supports_tools") is True,
        thinks=provider.get("supports_reasoning") is True,
    )


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


def _number(value: Any, kind: Any) -> Any:
    """`value` when it is a number of that kind (a boolean is none), else None."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


_lock = threading.Lock()
_known: Remembered[str, tuple[float, list[CatalogueModel]]] = Remembered(_lock)  # base URL -> (asked when, models)
_asking: Remembered[str, tuple[float, threading.Event]] = Remembered(_lock)  # base URL -> (began when, set when over)
NEVER = float("-inf")


def cache_folder() -> Path:
    return Path(os.environ.get("CHAT_HUB_CACHE") or Path.home() / ".cache" / "chatbot" / "hub") / "catalogue"


def base_of(url: str) -> str:
    """The OpenAI-compatible base of a chat or completions URL."""
    return url.rstrip("/").removesuffix("/chat/completions").removesuffix("/completions")


def models(url: str, token: str | None = None, wait: float = FIRST_WAIT) -> list[CatalogueModel]:
    """The catalogue of the server at `url` (its OpenAI-compatible base, ".../v1") as known now: when it is stale
    it is asked again in the background. Known from nowhere (not even the disk), the answer is waited for until
    `wait` seconds after the ask began; empty when it has not come by then."""
    base_url = base_of(url)
    with _lock:
        known = _known.get(base_url)
    if known is None and (kept := _kept(base_url)):
        with _lock:
            known = _known.setdefault(base_url, (NEVER, kept))  # used while the server is asked again
    with _lock:
        asking = _asking.get(base_url)
        if asking is None and (known is None or time.monotonic() - known[0] >= CATALOGUE_SECONDS):
            asking = _asking[base_url] = (time.monotonic(), threading.Event())
            threading.Thread(target=_ask, args=(base_url, token, asking), daemon=True, name="catalogue").start()
    if known is None and asking is not None:
        asking[1].wait(max(0.0, asking[0] + wait - time.monotonic()))
        with _lock:
            known = _known.get(base_url)
    return known[1] if known else []


def _ask(base_url: str, token: str | None, asking: tuple[float, threading.Event]) -> None:
    """Ask the server for its catalogue and keep it (on disk too); on failure keep what was known."""
    found = None
    try:
        answer = _read(base_url, token)
        found = parse(json.loads(answer), base_url)
        _keep(base_url, answer)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
        log.info("The model catalogue of %s could not be read: %s", base_url, error)
    finally:
        with _lock:
            if _asking.get(base_url) is asking:  # not forgotten meanwhile
                del _asking[base_url]
                before = _known.get(base_url)
                _known[base_url] = (time.monotonic(), found if found is not None else before[1] if before else [])
        asking[1].set()


def _read(base_url: str, token: str | None) -> bytes:
    """The bytes of `GET {base_url}/models`, uncompressed, within MAX_BYTES and ASK_SECONDS; ValueError when not."""
    deadline = time.monotonic() + ASK_SECONDS
    headers = {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {token}"} if token else {})}
    with requests.get(base_url.rstrip("/") + "/models", headers=headers, timeout=ASK_TIMEOUT, stream=True) as response:
        if not response.ok:
            raise ValueError(f"HTTP {response.status_code}")
        answer = bytearray()
        while chunk := response.raw.read1(READ_SIZE, decode_content=False):
            answer += chunk
            if len(answer) > MAX_BYTES:
                raise ValueError(f"the answer is larger than {MAX_BYTES:,} bytes")
            if time.monotonic() > deadline:
                raise ValueError(f"the answer was not whole after {ASK_SECONDS:g} s")
    return bytes(answer)


def _kept_file(base_url: str) -> Path:
    return cache_folder() / (hashlib.sha256(base_url.encode()).hexdigest()[:16] + ".json")


def _keep(base_url: str, answer: bytes) -> None:
    """Keep the answer on disk, whole or not at all (workers and hosts may write it at once)."""
    kept = _kept_file(base_url)
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
    partial.write_bytes(answer)
    os.replace(partial, kept)


def _kept(base_url: str) -> list[CatalogueModel]:
    """The catalogue kept on disk from an earlier answer; empty when there is none."""
    kept = _kept_file(base_url)
    try:
        if kept.stat().st_size > MAX_BYTES:
            return []
        return parse(json.loads(kept.read_bytes()), f"{base_url} (kept on disk)")
    except (OSError, ValueError):
        return []


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
    error.hint = f"Live models like it: {', '.join(alternatives)}. Pick one in the model menu, or set MODEL_ID in .env."
    error.user_hint = f"Live models like it: {', '.join(alternatives)}. Pick one in the model menu."
    return error
