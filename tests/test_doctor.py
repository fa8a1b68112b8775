"""`flask doctor` tells apart every way the chat can fail to reach its model."""

import json
import re
import signal

import pytest

from chatbot.chat.doctor import ask_built_in_model
from chatbot.local_model.server import LocalModelServer, free_port
from chatbot.web import create_app
from tests.fakes.hf_server import TOKEN

LOADING = {"error": "Model google/gemma-7b-it is currently loading", "estimated_time": 20.0}


def doctor(app):
    return app.test_cli_runner().invoke(args=["doctor"])


def test_a_working_model(app, fake):
    fake.reply(tokens=["Hello", "!"])
    result = doctor(app)
    assert result.exit_code == 0
    assert "ok   Hugging Face token: set" in result.output
    assert "google/gemma-7b-it (text-generation at http://127.0.0.1:" in result.output
    assert "answered 'Hello!'" in result.output
    assert fake.requests[-1].json["parameters"]["max_new_tokens"] == 8


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (
            {"status": 401, "body": {"error": "Invalid credentials in Authorization header"}},
            "huggingface.co/settings/tokens",
        ),
        ({"status": 403, "body": {"error": "Access restricted"}}, "Ask for access on https://huggingface.co/"),
        ({"status": 404, "body": "Not Found"}, "Check MODEL_ID"),
        ({"status": 429, "body": {"error": "Rate limit reached"}}, "Wait a minute before sending again"),
    ],
)
def test_each_failure_is_named_with_what_to_change(app, fake, reply, words):
    fake.reply(**reply)
    result = doctor(app)
    assert result.exit_code == 1
    assert "FAIL google/gemma-7b-it" in result.output
    assert words in result.output


def test_a_loading_model_is_not_a_failure(app, fake):
    fake.reply(status=503, body=LOADING)
    result = doctor(app)
    assert result.exit_code == 0
    assert "is loading (about 20 s)" in result.output and "The chat waits for it" in result.output


def test_an_unreachable_server(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    app = create_app(
        {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": url, "INFERENCE_API": "chat"}
    )
    result = doctor(app)
    assert result.exit_code == 1
    assert f"Could not reach {url}/chat/completions: connection refused." in result.output
    assert "Check that the model server is running" in result.output


def test_each_mcp_server_is_asked_for_its_tools_and_one_that_refuses_says_what_to_do(tmp_path, fake, mcp_log):
    refusing = f"http://127.0.0.1:{free_port()}/mcp"
    servers = [{"name": "web", "url": mcp_log.url}, {"name": "down", "url": refusing}]
    settings = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": fake.task_url()}
    settings["HF_API_TOKEN"] = TOKEN
    fake.reply(tokens=["Hello"])
    result = doctor(create_app({**settings, "MCP_SERVERS": json.dumps(servers)}))
    assert "ok   MCP server web (http): ok, 9 tools" in result.output
    assert "FAIL MCP server down (http): does not answer: The MCP server down could not be reached: connection " in (
        result.output
    )
    assert "-> Start it, or fix its url in MCP_SERVERS or MCP_CONFIG" in result.output
    assert result.exit_code == 0, result.output  # the chat answers without that server's tools


def test_the_built_in_model_is_asked_one_real_question(tmp_path):
    app = create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "HF_API_TOKEN": None})
    result = doctor(app)
    assert result.exit_code == 0, result.output
    assert "serves the built-in model (SmolLM2-135M-Instruct)" in result.output
    assert re.search(r"ok   The built-in model answered '.*Paris.*' in \d+\.\d s", result.output)


def test_a_crash_of_the_built_in_model_is_reported_with_its_cause(tmp_path):
    server = LocalModelServer(log=tmp_path / "local-model.log").start()
    server.process.send_signal(signal.SIGSEGV)
    server.process.wait()
    finding = ask_built_in_model(server)
    assert not finding.ok
    assert finding.text.startswith("The built-in model crashed while answering (signal 11, SIGSEGV). Its last lines:")
    assert "llama_server" in finding.text  # its own output
    assert "delete ~/.cache/chatbot/llama-server" in finding.hint
