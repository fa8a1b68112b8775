import subprocess
import sys

import pytest

from chatbot.services import inference
from chatbot.services.settings import load_settings
from config import ConfigError
from tests.servers import ROOT


def test_defaults_are_the_users_notes():
    config = load_settings({})
    assert config["MODEL_ID"] == "google/gemma-7b-it"
    assert config["INFERENCE_API"] is None  # chosen from the URL: the router's chat API with none
    assert config["MODELS"][0].api == "chat"
    assert config["MAX_NEW_TOKENS"] == 250
    assert config["TEMPERATURE"] == 0.7
    assert config["TOP_P"] == 0.9
    assert config["DO_SAMPLE"] is True
    assert config["WAIT_FOR_MODEL"] is True
    assert config["HF_API_TOKEN"] is None
    assert config["API_URL"] is None


def test_values_are_read_and_typed():
    config = load_settings(
        {
            "HF_TOKEN": "hf_abc",
            "MAX_NEW_TOKENS": "500",
            "TEMPERATURE": "0.9",
            "DO_SAMPLE": "false",
            "INFERENCE_API": "Chat",
            "API_URL": "http://127.0.0.1:8080/v1/",
            "WAIT_FOR_MODEL": "no",
        }
    )
    assert config["HF_API_TOKEN"] == "hf_abc"
    assert config["MAX_NEW_TOKENS"] == 500
    assert config["TEMPERATURE"] == 0.9
    assert config["DO_SAMPLE"] is False
    assert config["WAIT_FOR_MODEL"] is False
    assert config["INFERENCE_API"] == "chat"
    assert config["API_URL"] == "http://127.0.0.1:8080/v1"


def test_hf_api_token_wins_over_hf_token():
    assert load_settings({"HF_API_TOKEN": "hf_one", "HF_TOKEN": "hf_two"})["HF_API_TOKEN"] == "hf_one"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TEMPERATURE", "hot", "TEMPERATURE='hot' is not valid: it takes a number from 0 to 5."),
        (
            "INFERENCE_API",
            "grpc",
            "INFERENCE_API='grpc' is not valid: it takes one of text-generation, chat, completions.",
        ),
        ("MAX_NEW_TOKENS", "lots", "MAX_NEW_TOKENS='lots' is not valid: it takes a whole number from 1 to 32768."),
        ("DO_SAMPLE", "maybe", "DO_SAMPLE='maybe' is not valid: it takes true or false."),
        ("API_URL", "localhost:8080", "API_URL='localhost:8080' is not valid: it takes an http:// or https:// URL."),
        ("TOP_P", "1.5", "TOP_P='1.5' is not valid: it takes a number from 0 to 1."),
        (
            "TOOL_APPROVAL_MINUTES",
            "0",
            "TOOL_APPROVAL_MINUTES='0' is not valid: it takes a number from 0.001 to 60.",
        ),
        (  # a waiting card holds one of the worker's threads: a day of them would starve it
            "TOOL_APPROVAL_MINUTES",
            "1440",
            "TOOL_APPROVAL_MINUTES='1440' is not valid: it takes a number from 0.001 to 60.",
        ),
        ("TOOL_TIME_BUDGET_S", "0", "TOOL_TIME_BUDGET_S='0' is not valid: it takes a number from 0.1 to 86400."),
        (
            "MAX_ANSWERS_AT_ONCE",
            "-1",
            "MAX_ANSWERS_AT_ONCE='-1' is not valid: it takes a whole number from 0 to 1000.",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_takes(variable, value, expected):
    with pytest.raises(ConfigError) as error:
        load_settings({variable: value})
    assert str(error.value) == expected


def test_gunicorn_stops_with_one_line_on_a_bad_value(tmp_path):
    """Start-up with a bad value: gunicorn exits, and the error is one plain line."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "wsgi:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TEMPERATURE": "hot", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db"},
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "TEMPERATURE" in line]
    assert lines == ["Cannot start the chat: TEMPERATURE='hot' is not valid: it takes a number from 0 to 5."]
    assert "Traceback" not in result.stderr


def test_a_model_list_in_json():
    config = load_settings(
        {
            "MODELS": '[{"id": "google/gemma-7b-it", "name": "Gemma", "context_length": 8192},'
            ' {"id": "llama3.2", "api": "chat", "url": "http://127.0.0.1:11434/v1",'
            ' "parameters": {"temperature": 0.2, "do_sample": false}}]',
            "MAX_NEW_TOKENS": "100",
        }
    )
    gemma, llama = config["MODELS"]
    assert (gemma.name, gemma.api, gemma.url, gemma.context_length) == ("Gemma", "chat", None, 8192)  # the router
    assert gemma.parameters == {
        "max_new_tokens": 100,
        "temperature": 0.7,
        "top_p": 0.9,
        "do_sample": True,
        "reasoning_effort": None,
    }
    assert (llama.name, llama.api, llama.url) == ("llama3.2", "chat", "http://127.0.0.1:11434/v1")
    assert llama.parameters == {
        "max_new_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "do_sample": False,
        "reasoning_effort": None,
    }


def test_a_model_list_in_a_toml_file(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nname = "Mistral"\nid = "mistralai/mistral-7b-instruct"\nchat_format = "mistral"\n')
    (spec,) = load_settings({"MODELS": str(path)})["MODELS"]
    assert (spec.name, spec.id, spec.chat_format) == ("Mistral", "mistralai/mistral-7b-instruct", "mistral")


def test_model_id_alone_still_works():
    (spec,) = load_settings({"MODEL_ID": "tiiuae/falcon-7b-instruct", "CONTEXT_LENGTH": "2048"})["MODELS"]
    assert (spec.id, spec.name, spec.context_length) == ("tiiuae/falcon-7b-instruct", "tiiuae/falcon-7b-instruct", 2048)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            '[{"id": "a", "temperature": 1}]',
            "MODELS: model 1 has an unknown field 'temperature'; the fields are id, name, api, url, chat_format, "
            "context_length, parameters, tokenizer_config, system_prompt, titles, images, tools.",
        ),
        (
            '[{"id": "a", "parameters": {"temprature": 1}}]',
            "MODELS: model 'a' is not valid: unknown parameter 'temprature'; the parameters are max_new_tokens, "
            "temperature, top_p, do_sample, reasoning_effort.",
        ),
        (
            '[{"id": "a", "parameters": {"top_p": 3}}]',
            "MODELS: model 'a' is not valid: top_p=3: it takes a number from 0 to 1.",
        ),
        ('[{"name": "nameless"}]', "MODELS: model 1 has no 'id' (the Hub id or the server's model name)."),
        (
            '[{"id": "a", "chat_format": "chatml"}]',
            "MODELS: model 'a' is not valid: chat_format 'chatml' is not one of gemma, llama-2, mistral, falcon, "
            "transcript.",
        ),
        ('[{"id": "a"}, {"id": "a"}]', "MODELS names 'a' twice: every model needs its own name."),
        (
            '[{"id": "a", "api": "completions"}]',
            "MODELS: model 'a' uses the completions API, which needs a url (API_URL or the model's url).",
        ),
        ("[]", "MODELS is not valid: it takes a list of models ([{...}] or a [[models]] table)."),
        (
            "/no/such/models.json",
            "MODELS='/no/such/models.json' is not valid: the file cannot be read (No such file or directory).",
        ),
    ],
)
def test_a_bad_model_list_stops_start_up_with_one_line(models, expected):
    with pytest.raises(ConfigError) as error:
        load_settings({"MODELS": models})
    assert str(error.value) == expected


def test_malformed_json_names_where(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings({"MODELS": '[{"id": "a",}]'})
    assert str(error.value).startswith("MODELS is not valid JSON or TOML: ")


@pytest.mark.parametrize(
    ("url", "api"),
    [
        (None, "chat"),  # the Hugging Face router
        ("http://127.0.0.1:8080/v1", "chat"),  # llama.cpp, vLLM, Ollama, text-generation-webui, TGI's /v1
        ("http://127.0.0.1:11434/v1/", "chat"),
        ("http://127.0.0.1:8080/v1/chat/completions", "chat"),
        ("http://127.0.0.1:8080/v1/completions", "completions"),
        ("http://127.0.0.1:3000/generate_stream", "text-generation"),  # TGI with the notes' payload
        ("https://xyz.endpoints.huggingface.cloud", "text-generation"),  # an Inference Endpoint
        ("https://router.huggingface.co/hf-inference/models/google/gemma-7b-it", "text-generation"),
    ],
)
def test_the_protocol_follows_the_url_unless_inference_api_says(url, api):
    environ = {"API_URL": url} if url else {}
    assert load_settings(environ)["MODELS"][0].api == api
    assert load_settings({**environ, "INFERENCE_API": "text-generation"})["MODELS"][0].api == "text-generation"


def test_no_tool_servers_unless_configured():
    config = load_settings({})
    assert config["TOOL_SERVERS"] == ()
    assert (config["TOOL_ROUNDS"], config["TOOL_TIMEOUT_S"], config["TOOL_RESULT_MAX_CHARS"]) == (8, 60.0, 20_000)
    assert (config["TOOL_APPROVAL_MINUTES"], config["TOOL_TIME_BUDGET_S"]) == (10.0, 300.0)
    assert (config["MAX_ANSWERS_AT_ONCE"], config["MAX_ANSWERS_AT_ONCE_PER_ADDRESS"]) == (3, 12)


def test_tool_servers_come_from_chat_uis_list_and_from_an_mcp_json_file(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"mcpServers": {"files": {"command": "npx", "args": ["-y", "server-files", "/srv"], "env": {"A": "1"}},'
        ' "hub": {"url": "https://hf.co/mcp", "headers": {"Authorization": "Bearer x"}, "trust": "auto"},'
        ' "old": {"type": "sse", "url": "http://127.0.0.1:9/sse"}}}'
    )
    listed = '[{"name": "search", "url": "http://127.0.0.1:9000/mcp/", "headers": {"X-Key": "k"}}]'
    search, files, hub, old = load_settings({"MCP_SERVERS": listed, "MCP_CONFIG": str(path)})["TOOL_SERVERS"]
    assert (search.name, search.url, search.headers, search.transport, search.trust) == (
        "search",
        "http://127.0.0.1:9000/mcp",
        {"X-Key": "k"},
        "http",
        "ask",
    )
    assert (files.command, files.args, files.env, files.transport) == (
        "npx",
        ("-y", "server-files", "/srv"),
        {"A": "1"},
        "stdio",
    )
    assert (hub.trust, hub.headers) == ("auto", {"Authorization": "Bearer x"})
    assert old.transport == "sse"
    assert "Bearer" not in repr(hub) and "'1'" not in repr(files)  # headers and env never reach a log


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ("[1,", "MCP_SERVERS is not valid JSON: Expecting value: line 1 column 4 (char 3)."),
        ('{"name": "a"}', 'MCP_SERVERS is not valid: it takes a JSON list ([{"name": ..., "url": ...}]).'),
        ('[{"name": "a"}]', 'MCP_SERVERS: server \'a\' is not valid: it takes {"name", "url", "headers"}.'),
        (
            '[{"name": "a", "url": "ftp://x"}]',
            "MCP_SERVERS: server 'a' is not valid: url takes an http:// or https:// URL.",
        ),
        (
            '[{"name": "a", "url": "http://x", "trust": "always"}]',
            'MCP_SERVERS: server \'a\' is not valid: trust takes "ask" (each call waits for a yes) or "auto".',
        ),
        (
            '[{"name": "a b", "url": "http://x"}]',
            "MCP_SERVERS: server 'a b' is not valid: a name takes 1 to 32 letters, digits, _ or -.",
        ),
        (
            '[{"name": "a", "url": "http://x", "headers": {"X": 1}}]',
            "MCP_SERVERS: server 'a' is not valid: headers takes an object of strings.",
        ),
        (
            '[{"name": "a", "url": "http://x", "command": "rm"}]',
            "MCP_SERVERS: server 'a' has an unknown field 'command'; the fields are url, headers, trust, type.",
        ),
        (
            '[{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]',
            "The MCP server name 'a' is given twice: every server needs its own name.",
        ),
    ],
)
def test_a_bad_tool_server_stops_start_up_with_one_line_naming_it(listed, expected):
    with pytest.raises(ConfigError) as error:
        load_settings({"MCP_SERVERS": listed})
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"servers": {}}', 'MCP_CONFIG=PATH is not valid: it takes {"mcpServers": {"name": {...}}}.'),
        (
            '{"mcpServers": {"f": {"args": ["x"]}}}',
            "MCP_CONFIG: server 'f' is not valid: it takes a url, or a command to start.",
        ),
        (
            '{"mcpServers": {"f": {"command": "x", "args": "y"}}}',
            "MCP_CONFIG: server 'f' is not valid: args takes a list of strings.",
        ),
        (
            '{"mcpServers": {"f": {"command": "x", "type": "sse"}}}',
            "MCP_CONFIG: server 'f' is not valid: type 'sse' does not fit a command.",
        ),
        (
            '{"mcpServers": {"f": {"command": "x", "disabled": true}}}',
            "MCP_CONFIG: server 'f' has an unknown field 'disabled'; the fields are command, args, env, cwd, trust, "
            "type.",
        ),
        (
            '{"mcpServers": {"f": {"command": "x", "cwd": "/no/such/folder"}}}',
            "MCP_CONFIG: server 'f' is not valid: cwd takes the full path of a folder that exists.",
        ),
    ],
)
def test_a_bad_mcp_json_file_stops_start_up_with_one_line_naming_it(tmp_path, text, expected):
    path = tmp_path / "mcp.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings({"MCP_CONFIG": str(path)})
    assert str(error.value) == expected.replace("PATH", repr(str(path)))


def test_an_mcp_json_file_that_cannot_be_read_is_named():
    with pytest.raises(ConfigError) as error:
        load_settings({"MCP_CONFIG": "/no/such/mcp.json"})
    assert (
        str(error.value)
        == "MCP_CONFIG='/no/such/mcp.json' is not valid: the file cannot be read (No such file or directory)."
    )


def test_tools_in_models_marks_a_model_as_taking_tools_or_not_and_left_out_the_server_says():
    models = '[{"id": "a", "tools": true}, {"id": "b", "tools": "off"}, {"id": "c"}]'
    config = load_settings({"MODELS": models, "API_URL": "http://127.0.0.1:8080/v1"})
    specs = config["MODELS"]
    assert [spec.tools for spec in specs] == [True, False, None]
    assert [inference.backend_for(spec, config).takes_tools for spec in specs] == [True, False, None]
    with pytest.raises(ConfigError, match="MODELS: model 'a' is not valid"):
        load_settings({"MODELS": '[{"id": "a", "tools": "maybe"}]'})
