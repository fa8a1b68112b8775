"""A failed answer from the built-in model is told from what its supervisor knows, never as "check API_URL"."""

import threading
import time

import pytest

from chatbot.local_model import status as status_module
from chatbot.local_model.status import ModelStatus, explain
from chatbot.services.errors import InferenceError

URL = "http://127.0.0.1:5999/v1/chat/completions"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "local-model.json"


def refused():
    return InferenceError.unreachable(URL, ConnectionRefusedError("Connection refused"))


def test_a_crash_and_restart_is_told_with_its_signal(path):
    ModelStatus("restarting", "/srv/instance/local-model.log", "signal 11, SIGSEGV", crashes=1).save(path)
    error = explain(InferenceError.truncated(URL, "the connection broke"), str(path))
    assert error.kind == "local_model"
    assert error.message == (
        "The built-in model (SmolLM2-135M-Instruct) stopped unexpectedly (signal 11, SIGSEGV) and is restarting."
    )
    assert error.hint == "Send again in a few seconds."


def test_repeated_crashes_say_where_the_output_is_and_that_doctor_checks_it(path):
    retry_at = time.time() + 40
    ModelStatus("restarting", "/srv/instance/local-model.log", "signal 4, SIGILL", 5, retry_at).save(path)
    error = explain(refused(), str(path))
    assert error.message == (
        "The built-in model (SmolLM2-135M-Instruct) keeps crashing: 5 times in the last minute, the last with "
        "signal 4, SIGILL."
    )
    assert "Its output is in /srv/instance/local-model.log; `make doctor` checks it." in error.hint
    assert "It tries again by itself in about 40 s." in error.hint
    assert error.hint.endswith("For another model, set HF_API_TOKEN or API_URL in .env.")


def test_a_failure_while_it_runs_waits_for_the_supervisor_then_names_no_api_url(path, monkeypatch):
    monkeypatch.setattr(status_module, "NOTICE_SECONDS", 0.3)
    ModelStatus("running", "/srv/instance/local-model.log").save(path)
    started = time.monotonic()
    error = explain(refused(), str(path))
    assert time.monotonic() - started >= 0.3
    assert error.message.startswith("The built-in model (SmolLM2-135M-Instruct) did not answer as expected: ")
    assert "connection refused" in error.message
    assert "run `make doctor`" in error.hint and "/srv/instance/local-model.log" in error.hint
    assert "API_URL" not in error.message + error.hint


def test_the_supervisor_noticing_meanwhile_is_what_the_user_is_told(path):
    ModelStatus("running", "x.log").save(path)
    notice = threading.Timer(0.3, ModelStatus("restarting", "x.log", "signal 9, SIGKILL", 1).save, [path])
    notice.start()
    assert "stopped unexpectedly (signal 9, SIGKILL)" in explain(refused(), str(path)).message
    notice.join()


def test_starting_and_failures_that_are_not_the_models_own(path):
    ModelStatus("starting", "x.log").save(path)
    assert explain(refused(), str(path)).message == "The built-in model (SmolLM2-135M-Instruct) is starting."
    too_long = InferenceError("too_long", "The conversation is too long for the model.", "Start a new chat.")
    assert explain(too_long, str(path)) is too_long


def test_without_a_status_file_the_error_is_unchanged(path):
    error = refused()
    assert explain(error, str(path)) is error
