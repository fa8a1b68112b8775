"""The built-in model through the app against llama.cpp alone: time to first token and tokens per second.

Run: .venv/bin/python bench/local_model.py [--tokens 250] [--runs 10] [--server PATH]
The built-in model's server (chatbot/local_model) answers one question greedily, so both ways get the same
tokens; "alone" reads its stream with the app's own client, "through the app" sends the question over the
chat's WebSocket (gunicorn, 2 gthread workers, as `make run` sets it up) and reads the fragments. Tokens per
second are the answer's tokens over the time from its first text to its end, as the reader sees them.
`--server` takes another llama-server binary (to compare builds with other instruction sets).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import percentile  # noqa: E402
from chatbot.local_model.server import SYSTEM_PROMPT, LocalModelServer  # noqa: E402
from chatbot.services.inference import Backend, Parameters, build_request, stream_reply  # noqa: E402
from tests.servers import ANSWER_TEXT, FINISHED, UNLIMITED, ChatClient, GunicornApp  # noqa: E402

QUESTION = "Write a long story about a dragon who learns to fly."
TOKENS = re.compile(r'<p class="stats">(\d+) tokens?')


def alone(server: LocalModelServer, parameters: Parameters) -> tuple[float, float, int]:
    """(seconds to the first token, tokens per second after it, tokens) reading the server directly."""
    backend = Backend(api="chat", url=server.url, model_id=server.model_id)
    turns = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    started = time.perf_counter()
    first, tokens = None, 0
    for _ in stream_reply(build_request(backend, parameters, turns), backend):
        first = first or time.perf_counter()
        tokens += 1
    ended = time.perf_counter()
    return first - started, (tokens - 1) / (ended - first), tokens


def through_the_app(ws) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(seconds to the first text fragment, tokens per second after it, tokens) through the chat's socket."""
    started = time.perf_counter()
    ws.send(json.dumps({"action": "send", "message": QUESTION}))
    first = None
    while True:
        frame = ws.recv()
        if first is None and ANSWER_TEXT.search(frame):
            first = time.perf_counter()
        if FINISHED.search(frame):
            ended = time.perf_counter()
            tokens = int(TOKENS.search(frame).group(1))
            return first - started, (tokens - 1) / (ended - first), tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=250, help="max new tokens")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--server", type=Path, help="another llama-server binary")
    options = parser.parse_args()
    parameters = Parameters(max_new_tokens=options.tokens, do_sample=False)
    with tempfile.TemporaryDirectory() as folder, LocalModelServer(binary=options.server) as server:
        environment = {
            **UNLIMITED,
            "MODEL_TITLES": "false",
            "SECRET_KEY": "bench",
            "CHAT_STORE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "HF_API_TOKEN": "",
            **server.app_environment(),
            "SYSTEM_PROMPT": SYSTEM_PROMPT,
            "MAX_NEW_TOKENS": str(options.tokens),
            "DO_SAMPLE": "false",
        }
        with GunicornApp(environment) as app:
            direct, relayed = [], []
            for _ in range(options.runs):  # taken in turns, so both see the machine in the same state
                direct.append(alone(server, parameters))
                ws = ChatClient(app.url).connect()  # a new browser, so a new conversation: the same prompt
                relayed.append(through_the_app(ws))
                ws.close()
    print(f"{QUESTION!r}, greedy, max {options.tokens} tokens, {options.runs} runs each (medians)")
    for name, runs in (("llama.cpp alone", direct), ("through the app", relayed)):
        first = statistics.median(run[0] for run in runs) * 1000
        rate = statistics.median(run[1] for run in runs)
        tokens = statistics.median(run[2] for run in runs)
        print(f"{name:16}: first token {first:6.1f} ms, {rate:6.1f} tokens/s, {tokens:.0f} tokens")
    ratios = sorted(app[1] / own[1] for own, app in zip(direct, relayed, strict=True))  # each pair ran back to back
    print(f"ratio (app / alone, per pair): median {statistics.median(ratios):.3f}, ", end="")
    print(f"quartiles {percentile(ratios, 0.25):.3f} / {percentile(ratios, 0.75):.3f}")


if __name__ == "__main__":
    main()
