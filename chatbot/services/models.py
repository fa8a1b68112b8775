"""The models a user may pick: `ModelSpec`, read from MODELS (JSON, or a .json/.toml file) or MODEL_ID.

`with_models(config)` (which `services/settings.py` calls at start) turns the MODELS setting into a list of
`ModelSpec`s (a bad entry raises `ConfigError` in one line, as every other setting does); each field is checked as
its environment variable is.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from chatbot.services.prompts import FORMATS
from config import PARAMETERS, SETTINGS, ConfigError


def with_models(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with MODELS as a list of `ModelSpec`s and MODELS_SOURCE as what was written, if anything."""
    config["MODELS_SOURCE"] = config["MODELS"] if isinstance(config["MODELS"], str) else None
    config["MODELS"] = model_list(config)
    return config


@dataclass(frozen=True)
class ModelSpec:
    """One model a user may pick: where it is served, how to talk to it, its defaults."""

    id: str
    name: str
    api: str
    url: str | None = None
    chat_format: str | None = None
    context_length: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: str | None = None
    system_prompt: str = ""
    titles: bool | None = None  # the model titles chats; None: MODEL_TITLES
    images: bool | None = None  # it takes images (chat API only); None: as its server's catalogue says
    tools: bool | None = None  # it is offered tools (chat API only); None: unless its server says it takes none


MODEL_FIELDS = tuple(f.name for f in fields(ModelSpec))


def api_for_url(url: str | None) -> str:
    """The protocol of a URL that INFERENCE_API does not name: OpenAI-compatible chat for the Hugging Face router
    (no URL) and any `.../v1` address (what every local server's docs say to paste), the text-generation task
    (the user's notes) for anything else: TGI, an Inference Endpoint, a model's hf-inference address."""
    path = urlsplit(url or "").path.rstrip("/")
    if not url or path.endswith(("/v1", "/v1/chat/completions")):
        return "chat"
    if path.endswith("/v1/completions"):
        return "completions"
    return "text-generation"


def model_list(config: dict[str, Any]) -> list[ModelSpec]:
    """The models a user may pick: from MODELS (JSON, or a .json/.toml file), else MODEL_ID alone."""
    raw = config["MODELS"]
    if isinstance(raw, list):
        return raw
    defaults = {key: config[variable] for key, variable in PARAMETERS.items()}
    if not raw:
        entries: list[Any] = [
            {
                "id": config["MODEL_ID"],
                "context_length": config["CONTEXT_LENGTH"],
                "system_prompt": config["SYSTEM_PROMPT"],
            }
        ]
    else:
        entries = _read_models(raw)
    specs = [_model_spec(index, entry, config, defaults) for index, entry in enumerate(entries, 1)]
    names = [spec.name for spec in specs]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise ConfigError(f"MODELS names {duplicate!r} twice: every model needs its own name.")
    return specs


def _read_models(raw: str) -> list[Any]:
    try:
        if raw.startswith(("[", "{")):
            data = json.loads(raw)
        elif raw.endswith(".toml"):
            with open(raw, "rb") as file:
                data = tomllib.load(file)
        else:
            with open(raw, encoding="utf-8") as file:
                data = json.load(file)
    except OSError as error:
        raise ConfigError(f"MODELS={raw!r} is not valid: the file cannot be read ({error.strerror}).") from None
    except ValueError as error:
        raise ConfigError(f"MODELS is not valid JSON or TOML: {error}.") from None
    if isinstance(data, dict):
        data = data.get("models")
    if not isinstance(data, list) or not data:
        raise ConfigError("MODELS is not valid: it takes a list of models ([{...}] or a [[models]] table).")
    return data


def _model_spec(index: int, entry: Any, config: dict[str, Any], defaults: dict[str, Any]) -> ModelSpec:
    where = f"MODELS: model {index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not valid: it takes a table of fields ({', '.join(MODEL_FIELDS)}).")
    unknown = sorted(set(entry) - set(MODEL_FIELDS))
    if unknown:
        raise ConfigError(f"{where} has an unknown field {unknown[0]!r}; the fields are {', '.join(MODEL_FIELDS)}.")
    if not isinstance(entry.get("id"), str) or not entry["id"].strip():
        raise ConfigError(f"{where} has no 'id' (the Hub id or the server's model name).")
    where = f"MODELS: model {entry['id']!r}"
    try:
        parameters = parse_parameters(entry.get("parameters") or {}, defaults)
        url = _setting("API_URL", str(entry["url"])) if entry.get("url") else config["API_URL"]
        spec = ModelSpec(
            id=entry["id"].strip(),
            name=str(entry.get("name") or entry["id"]).strip(),
            api=_setting("INFERENCE_API", str(entry.get("api") or config["INFERENCE_API"] or api_for_url(url))),
            url=url,
            chat_format=_chat_format(entry.get("chat_format")),
            context_length=_setting("CONTEXT_LENGTH", str(entry["context_length"]))
            if entry.get("context_length")
            else None,
            parameters=parameters,
            tokenizer_config=_readable(entry.get("tokenizer_config")),
            system_prompt=str(entry.get("system_prompt") or config["SYSTEM_PROMPT"]),
            titles=_on_off(entry, "titles"),
            images=_on_off(entry, "images"),
            tools=_on_off(entry, "tools"),
        )
    except ValueError as error:
        raise ConfigError(f"{where} is not valid: {error}.") from None
    if spec.api == "completions" and not spec.url:
        raise ConfigError(f"{where} uses the completions API, which needs a url (API_URL or the model's url).")
    return spec


def _setting(variable: str, raw: str) -> Any:
    """`raw` read as the environment variable `variable` is (ValueError in its words if it is not valid)."""
    return SETTINGS[variable][0](raw)


def _on_off(entry: dict[str, Any], key: str) -> bool | None:
    """A model's on/off field, read as every on/off setting is (MODEL_TITLES's words); None when not given."""
    return _setting("MODEL_TITLES", str(entry[key]).lower()) if key in entry else None


def parse_parameters(given: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Generation parameters over `defaults`, each checked as its environment variable is; ValueError if bad."""
    if not isinstance(given, dict):
        raise ValueError("'parameters' takes a table")
    unknown = sorted(set(given) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; the parameters are {', '.join(PARAMETERS)}")
    values = dict(defaults)
    for key, value in given.items():
        parse = SETTINGS[PARAMETERS[key]][0]
        try:
            values[key] = parse(str(value).lower() if isinstance(value, bool) else str(value))
        except ValueError as error:
            raise ValueError(f"{key}={value!r}: it takes {error}") from None
    return values


def _chat_format(name: Any) -> str | None:
    if not name:
        return None
    if name not in FORMATS:
        raise ValueError(f"chat_format {name!r} is not one of {', '.join(FORMATS)}")
    return str(name)


def _readable(path: Any) -> str | None:
    if not path:
        return None
    if not os.path.isfile(str(path)):
        raise ValueError(f"tokenizer_config {path!r} is not a file")
    return str(path)
