"""Every setting as the chat uses it: `config.load_config` (the environment, checked), with the models a user may
pick (services/models.py) and the MCP servers (services/tool_servers.py) read from what MODELS, MCP_SERVERS and
MCP_CONFIG name. A bad one raises `ConfigError` in one line, as every other setting does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatbot.services.models import with_models
from chatbot.services.tool_servers import tool_servers
from config import load_config


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every setting from `environ` (default: os.environ), `overrides` winning, with MODELS and the MCP servers read."""
    config = with_models(load_config(environ, overrides))
    config["TOOL_SERVERS"] = tool_servers(config["MCP_SERVERS"], config["MCP_CONFIG"])
    return config
