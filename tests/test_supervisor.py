"""The built-in model is supervised: a real llama.cpp server killed mid-answer is told of and restarted."""

import os
import signal
import time

import pytest
import requests

from chatbot.local_model.server import SYSTEM_PROMPT, LocalModelServer
from chatbot.local_model.status import ModelStatus
from chatbot.local_model.supervisor import MAX_STARTS_PER_MINUTE, Supervisor, backoff
from tests.conftest import app_environment
from tests.servers import ANSWER_TEXT, FINISHED, ChatClient, GunicornApp, act, read_until

LONG_ANSWER = "Count from 1 to 300, one number per line."


@pytest.fixture
def supervised(tmp_path):
    said = []
    supervisor = Supervisor(
        LocalModelServer(log=tmp_path / "local-model.log"), tmp_path / "local-model.json", say=said.append
    )
    supervisor.said = said
    with supervisor:
        yield supervisor


@pytest.fixture
def chat_on_supervised(tmp_path, supervised):
    environment = app_environment(
        tmp_path,
        **supervised.server.app_environment(),
        SYSTEM_PROMPT=SYSTEM_PROMPT,
        LOCAL_MODEL_STATUS=str(supervised.status_path),
        MAX_NEW_TOKENS="1000",
    )
    with GunicornApp(environment) as app:
        yield app


def status(supervisor):
    return ModelStatus.load(supervisor.status_path)


def wait_until_running(supervisor, seconds=60):
    for _ in range(int(seconds * 10)):
        if status(supervisor).state == "running" and supervisor.server.answers():
            return
        time.sleep(0.1)
    raise AssertionError(f"the model did not come back: {status(supervisor)}")


def test_a_model_killed_mid_answer_keeps_the_partial_answer_and_the_next_one_is_answered(
    supervised, chat_on_supervised
):
    chat = ChatClient(chat_on_supervised.url)
    ws = chat.connect()
    act(ws, "send", message=LONG_ANSWER)
    frames = read_until(ws, [], ANSWER_TEXT)  # the answer is streaming
    os.kill(supervised.server.process.pid, signal.SIGKILL)
    read_until(ws, frames, FINISHED)
    assert FINISHED.search(frames[-1]).group(2) == "error"
    assert "The built-in model (SmolLM2-135M-Instruct) stopped unexpectedly (signal 9, SIGKILL)" in frames[-1]
    assert "and is restarting" in frames[-1] and "Send again in a few seconds." in frames[-1]
    assert "API_URL" not in frames[-1]
    assert "The partial answer above is kept." in frames[-1]
    assert any("signal 9, SIGKILL" in line and "Its last lines" in line for line in supervised.said)

    wait_until_running(supervised)
    answer = chat.exchange("What is the capital of France?", ws)
    assert FINISHED.search(answer[-1]).group(2) == "done"
    ws.close()
    page = chat.page()
    assert page.count('class="message assistant error"') == 1  # the partial one, kept
    assert page.count('class="message assistant done"') == 1


def test_readyz_says_the_model_is_down_while_it_restarts(supervised, chat_on_supervised):
    assert requests.get(chat_on_supervised.url + "/readyz", timeout=10).status_code == 200
    ModelStatus("restarting", "x.log", "signal 11, SIGSEGV", 1).save(supervised.status_path)
    down = requests.get(chat_on_supervised.url + "/readyz", timeout=10)
    assert down.status_code == 503
    assert down.json()["backend"] == (
        "The built-in model (SmolLM2-135M-Instruct) stopped unexpectedly (signal 11, SIGSEGV) and is restarting."
    )


def test_the_backoff_doubles_and_no_more_than_five_starts_fall_in_a_minute():
    assert [backoff([100.0] * n, 100.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    crashes = [100.0, 101.0, 102.0, 104.0, 108.0]  # the fifth crash in 8 s: wait until the first is a minute old
    assert len(crashes) == MAX_STARTS_PER_MINUTE
    assert backoff(crashes, 108.0) == 52.0
    assert backoff([100.0] * 12, 100.0) == 60.0


def test_a_model_that_keeps_crashing_is_restarted_with_a_backoff(supervised):
    for _ in range(3):
        wait_until_running(supervised)
        supervised.server.process.send_signal(signal.SIGSEGV)
        for _ in range(50):
            if status(supervised).state == "restarting":
                break
            time.sleep(0.1)
    now = status(supervised)
    assert now.state == "restarting" and now.crashes == 3 and now.exit == "signal 11, SIGSEGV"
    assert now.reason().startswith("The built-in model (SmolLM2-135M-Instruct) keeps crashing: 3 times")
    delays = [
        float(line.split("starting it again in ")[1].split(" s")[0]) for line in supervised.said if "again in" in line
    ]
    assert delays == [0.5, 1.0, 2.0]
    wait_until_running(supervised)


def test_stopping_during_a_restart_leaves_no_server_behind(tmp_path):
    supervisor = Supervisor(LocalModelServer(log=tmp_path / "model.log"), tmp_path / "model.json", say=lambda _: None)
    supervisor.start()
    first = supervisor.server.process
    first.send_signal(signal.SIGSEGV)
    deadline = time.monotonic() + 10
    while supervisor.server.process is first and time.monotonic() < deadline:
        time.sleep(0.01)  # the restart has begun: a new server is starting
    supervisor.stop()
    assert supervisor.server.process.poll() is not None
    assert status(supervisor).state == "stopped"
