import subprocess
import sys

import pytest

from config import ConfigError, load_config
from tests.servers import ROOT


def test_defaults_are_the_users_notes():
    config = load_config({})
    assert config["MODEL_ID"] == "google/gemma-7b-it"
    assert config["INFERENCE_API"] == "text-generation"
    assert config["MAX_NEW_TOKENS"] == 250
    assert config["TEMPERATURE"] == 0.7
    assert config["TOP_P"] == 0.9
    assert config["DO_SAMPLE"] is True
    assert config["WAIT_FOR_MODEL"] is True
    assert config["HF_API_TOKEN"] is None
    assert config["API_URL"] is None


def test_values_are_read_and_typed():
    config = load_config(
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
    assert load_config({"HF_API_TOKEN": "hf_one", "HF_TOKEN": "hf_two"})["HF_API_TOKEN"] == "hf_one"


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
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_takes(variable, value, expected):
    with pytest.raises(ConfigError) as error:
        load_config({variable: value})
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
