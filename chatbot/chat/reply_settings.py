"""The settings an answer is written with: the model's, with what the user set for the conversation on top, and
the limits of the owner's account."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.chat import picker, tool_access
from chatbot.chat.limits import Asker
from chatbot.services import inference
from chatbot.services.models import ModelSpec, parse_parameters
from chatbot.services.tool_servers import ToolServer
from chatbot.stores.conversations import Conversation, Store

FLUSH_SECONDS = 0.04  # at most one fragment per 40 ms per answer
SAVE_SECONDS = 0.25  # a partial answer is saved (and Stop from other tabs looked for) this often


@dataclass
class ReplySettings:
    backend: inference.Backend
    parameters: inference.Parameters
    system_prompt: str = ""
    max_loading_wait: float = 300.0  # seconds to keep retrying a model that is loading
    model_name: str = ""
    flush_seconds: float = FLUSH_SECONDS
    save_seconds: float = SAVE_SECONDS
    local_model_status: str | None = None  # the built-in model's status file: failures are told from it
    titles: bool = False  # after the first answer, the model writes the chat's title (chatbot/chat/titles.py)
    takes_images: bool = False  # attached images are shown to the model (OpenAI content parts)
    tokens_per_day: int = 0  # the owner's account may use this many tokens a day (0: no limit)
    asker: Asker | None = None  # who asked: each round after tool calls counts as an answer of the minute too
    tool_servers: tuple[ToolServer, ...] = ()  # MCP servers whose tools the model may call (chat protocol only)
    tool_rounds: int = 8  # rounds of tool calls in one answer; then it is asked to answer without them
    tool_timeout: float = 60.0  # seconds one call may take
    tool_time_budget: float = 300.0  # seconds all the calls of one answer may run (waits on a card not counted)
    tool_result_max_chars: int = 20_000  # what the model is shown of one result
    connect_timeout: float = 10.0  # seconds to reach a tool server
    tool_approval_minutes: float = 10.0  # a call that waits for the user's yes is denied after this long
    files_kept_mb: float = 0.0  # the images tools return are kept within FILES_KEPT_MB (0: no limit)


def model_spec(config: dict, name: str | None) -> ModelSpec:
    """The model with that name (configured, or from a server's catalogue); the first configured one when the
    name is unknown or empty."""
    return picker.choice(config, name).spec


def pick_model(store: Store, conversation: Conversation, name: str) -> bool:
    """Remember the model the user picked for this conversation (one picker.refusal lets through); whether it
    is another than before."""
    if conversation.settings.get("model") == name:
        return False
    conversation.settings["model"] = name
    store.update_conversation(conversation)
    return True


PARAMETER_WORDS = {  # how the header names a setting that differs from the model's own
    "max_new_tokens": "at most {} tokens",
    "temperature": "temperature {}",
    "top_p": "top_p {}",
    "reasoning_effort": "reasoning effort {}",
}


def changed_settings(conversation: Conversation, config: dict) -> list[str]:
    """The conversation's settings that differ from its model's own, in words (none: the model says it all)."""
    spec = model_spec(config, conversation.settings.get("model"))
    words = []
    for key, value in conversation.settings.get("parameters", {}).items():
        if value == spec.parameters.get(key) or value in (None, ""):
            continue
        if key == "do_sample":
            words.append("sampling" if value else "greedy")
        elif key in PARAMETER_WORDS:
            words.append(PARAMETER_WORDS[key].format(value))
    system_prompt = conversation.settings.get("system_prompt")
    if system_prompt is not None and system_prompt != spec.system_prompt:
        words.append("own system prompt" if system_prompt else "no system prompt")
    return words


def settings_for_conversation(
    conversation: Conversation, config: dict, account_limits: dict | None = None
) -> ReplySettings:
    """The model's settings, with what the user set for this conversation on top, and the limits the admin set
    for accounts (`account_limits`, when the owner is an account)."""
    settings = settings_from_config(config, conversation.settings.get("model"), conversation.settings)
    settings.tokens_per_day = (account_limits or {}).get("tokens_per_day") or 0
    return settings


def save_conversation_settings(
    store: Store, conversation: Conversation, form: dict[str, str], config: dict, tools_on: list[str] | None = None
) -> None:
    """Check and keep a conversation's settings (system prompt, parameters, and the MCP servers it keeps on when
    the form showed their switches: those named in `tools_on`); ValueError says what is wrong."""
    spec = model_spec(config, conversation.settings.get("model"))
    fields = ("max_new_tokens", "temperature", "top_p", "reasoning_effort")
    given = {key: form[key] for key in fields if form.get(key, "").strip()}
    given["do_sample"] = "true" if form.get("do_sample") else "false"
    parameters = parse_parameters(given, spec.parameters)
    system_prompt = form.get("system_prompt", "").strip()
    if len(system_prompt) > config["MAX_MESSAGE_CHARS"]:  # it goes with every request: no larger than a message
        raise ValueError(
            f"the system prompt has {len(system_prompt):,} characters; the limit is {config['MAX_MESSAGE_CHARS']:,}"
        )
    conversation.settings["parameters"] = {k: v for k, v in parameters.items() if v != spec.parameters.get(k)}
    conversation.settings["system_prompt"] = system_prompt
    if tools_on is not None:
        tool_access.switch(conversation.settings, config["TOOL_SERVERS"], tools_on)
    store.update_conversation(conversation)


def settings_from_config(config: dict, model_name: str | None = None, chosen: dict | None = None) -> ReplySettings:
    """Reply settings for one of the configured models (a plain mapping, no Flask needed)."""
    spec = model_spec(config, model_name)
    chosen = chosen or {}
    system_prompt = chosen["system_prompt"] if chosen.get("system_prompt") is not None else spec.system_prompt
    return ReplySettings(
        backend=inference.backend_for(spec, config),
        parameters=inference.Parameters(**{**spec.parameters, **chosen.get("parameters", {})}),
        system_prompt=system_prompt,
        max_loading_wait=config["MAX_LOADING_WAIT"],
        model_name=spec.name,
        local_model_status=config.get("LOCAL_MODEL_STATUS"),
        titles=config["MODEL_TITLES"] if spec.titles is None else spec.titles,
        takes_images=bool(spec.images) and spec.api == "chat",
        tool_servers=tool_access.switched_on(config["TOOL_SERVERS"], chosen),
        tool_rounds=config["TOOL_ROUNDS"],
        tool_timeout=config["TOOL_TIMEOUT_S"],
        tool_time_budget=config["TOOL_TIME_BUDGET_S"],
        tool_result_max_chars=config["TOOL_RESULT_MAX_CHARS"],
        connect_timeout=config["CONNECT_TIMEOUT"],
        tool_approval_minutes=config["TOOL_APPROVAL_MINUTES"],
        files_kept_mb=config["FILES_KEPT_MB"],
    )
