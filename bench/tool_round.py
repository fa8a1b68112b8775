"""Tool rounds: the time the app adds around a tool call, beside the call's own time.

Run: .venv/bin/python bench/tool_round.py [--runs 30]

The fake router (tests/fakes/hf_server.py, OpenAI chat completions) answers a message with one call of the fake
MCP server's `echo` (tests/fakes/mcp_server.py, the official SDK over streamable HTTP, a process of its own), then,
asked again with the result, with text. The answer is written in this process (chatbot/chat/answer_writer.py
with a SQLite store, no socket), so one clock times everything:

- finish -> call: from the router's last byte of the turn that asks for the call to the start of the call;
- call: the call itself (`Toolbox.call`: the MCP request and its answer), the tool's own time;
- result -> request: from the call's end to the router having the next request whole;
- first request: from the message to the router having the first request, with the tool server configured and
  without it (what listing the tools costs each answer);
- CPU per token: answers of --tokens tokens with tools offered but none called, and with no tool server (this
  process's CPU, the fake router's included: the same in both).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat import actions  # noqa: E402
from chatbot.services import tools  # noqa: E402
from chatbot.web import create_app  # noqa: E402
from chatbot.web.common import store as current_store  # noqa: E402
from tests.fakes.hf_server import TOKEN, FakeHuggingFace  # noqa: E402
from tests.fakes.mcp_server import FakeMcpServer  # noqa: E402
from tests.servers import UNLIMITED  # noqa: E402

CALL = ("call_1", "web__echo", json.dumps({"text": "hello"}))
calls: list[tuple[float, float]] = []  # (start, end) of each tool call, time.perf_counter


def timed_call(call):  # type: ignore[no-untyped-def]
    @functools.wraps(call)
    def wrapper(*arguments, **named):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return call(*arguments, **named)
        finally:
            calls.append((started, time.perf_counter()))

    return wrapper


def answer(app, fake: FakeHuggingFace, with_call: bool, tokens: int = 2) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Write one answer (with one tool call, or none) of `tokens` tokens in a new chat: seconds from the message
    to the first request, and this process's CPU seconds for all of it (the fake router's included)."""
    with app.app_context():
        store = current_store()
        conversation = store.create_conversation("bench")
        if with_call:
            fake.reply(tokens=[], tool_calls=[CALL])
        fake.reply(tokens=[" word"] * tokens)
        asked = len(fake.requests)
        started, cpu = time.perf_counter(), time.process_time()
        reply = actions.send(store, conversation, actions.Visitor(app.config), "Say hello with the tool")
        message = reply.write(lambda event: None, None)
        assert message is not None and message.status == "done", message and message.error
        return fake.requests[asked].at - started, time.process_time() - cpu


def environment(folder: str, fake: FakeHuggingFace, mcp_url: str | None) -> dict[str, str]:
    settings = {
        **UNLIMITED,
        "SECRET_KEY": "bench",
        "CHAT_STORE_URL": f"sqlite:///{folder}/bench.sqlite3",
        "API_URL": fake.url + "/v1",
        "INFERENCE_API": "chat",
        "MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct",
        "HF_API_TOKEN": TOKEN,
        "HF_ENDPOINT": fake.url,
        "CHAT_HUB_CACHE": folder,
        "MODEL_TITLES": "false",
    }
    if mcp_url:
        settings["MCP_SERVERS"] = json.dumps([{"name": "web", "url": mcp_url, "trust": "auto"}])
    return settings


def app_from(settings: dict[str, str]):  # type: ignore[no-untyped-def]
    """The app as the environment makes it (settings are read from it, as gunicorn's workers read them)."""
    saved = dict(os.environ)
    os.environ.update(settings)
    try:
        return create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of the answers that time a token's cost")
    parser.add_argument("--long-runs", type=int, default=5, help="answers of --tokens tokens, each way")
    options = parser.parse_args()
    logging.disable(logging.INFO)  # the fake MCP server's module sets up the SDK's logging: a line per request
    tools.Toolbox.call = timed_call(tools.Toolbox.call)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder, FakeHuggingFace() as fake:
        mcp = FakeMcpServer(Path(folder) / "mcp.log")
        try:
            with_tools = app_from(environment(folder, fake, mcp.url))
            Path(folder, "none").mkdir()
            without = app_from(environment(folder + "/none", fake, None))
            for _ in range(2):  # each app's first answer meets its caches empty
                answer(with_tools, fake, True)
                answer(without, fake, False)
            calls.clear()
            firsts: dict[str, list[float]] = {"with the tool server": [], "without": []}
            to_call, own, to_request = [], [], []
            for _ in range(options.runs):
                asked, ended = len(fake.requests), len(fake.streams_ended)
                firsts["with the tool server"].append(answer(with_tools, fake, True)[0])
                start, end = calls[-1]
                to_call.append(start - fake.streams_ended[ended])  # the turn that asked for the call
                own.append(end - start)
                to_request.append(fake.requests[asked + 1].at - end)
                firsts["without"].append(answer(without, fake, False)[0])
            per_token: dict[str, list[float]] = {"with the tool server": [], "without": []}
            for _ in range(options.long_runs):  # tools offered, none called: does each token cost more?
                for name, app in (("with the tool server", with_tools), ("without", without)):
                    per_token[name].append(answer(app, fake, False, options.tokens)[1] / options.tokens)
        finally:
            mcp.stop()

    def ms(values: list[float]) -> str:
        return f"p50 {statistics.median(values) * 1000:6.2f} ms, max {max(values) * 1000:6.2f} ms"

    print(f"{options.runs} answers with one call of the fake MCP server's echo (streamable HTTP)")
    print(f"finish -> call        : {ms(to_call)}")
    print(f"the call itself       : {ms(own)}")
    print(f"result -> request     : {ms(to_request)}")
    for name, values in firsts.items():
        print(f"message -> first request, {name:21}: {ms(values)}")
    print(f"{options.long_runs} answers of {options.tokens} tokens each, no call (CPU of the app and the fake router)")
    for name, values in per_token.items():
        print(f"CPU per token, {name:21}: p50 {statistics.median(values) * 1e6:6.1f} µs")


if __name__ == "__main__":
    main()
