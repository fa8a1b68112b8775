"""Models' own chat templates, rendered in Jinja's sandbox, against the strings in docs/protocols.md."""

import json

import pytest
from jinja2.exceptions import SecurityError

from chatbot.services import remembered
from chatbot.services.inference import Backend, Parameters, build_request
from chatbot.services.prompts import ChatTemplate, chat_template_from, read_chat_template
from tests.fakes.hf_server import TOKEN
from tests.servers import ROOT

DATA = ROOT / "tests" / "data"
TURNS = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Next"},
]
SYSTEM = {"role": "system", "content": "Be brief."}


def template(name):
    return read_chat_template(str(DATA / f"{name}.tokenizer_config.json"))


def test_gemma_template():
    prompt = template("gemma").render(TURNS)
    assert prompt.text == (
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nNext<end_of_turn>\n<start_of_turn>model\n"
    )


def test_a_template_without_a_system_role_gets_it_folded_into_the_first_turn():
    prompt = template("gemma").render([SYSTEM, TURNS[0]])
    assert prompt.text == "<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_llama_2_template_with_a_system_prompt():
    prompt = template("llama-2").render([SYSTEM, *TURNS])
    assert prompt.text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Next [/INST]"
    assert prompt.stop == ("</s>",)


def test_mistral_template():
    assert template("mistral").render(TURNS).text == "<s>[INST] Hello [/INST]Hi there</s>[INST] Next [/INST]"


def test_named_templates_use_the_default_one():
    config = {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ 1 }}"}]}
    assert chat_template_from(config).render(TURNS[:1]).text == "1"
    assert chat_template_from({"bos_token": "<s>"}) is None


def test_the_sandbox_refuses_to_reach_python():
    hostile = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        hostile.render(TURNS)


def test_a_tokenizer_config_in_the_model_list_writes_the_prompt(tmp_path):
    backend = Backend(
        api="text-generation", url="http://127.0.0.1:1/", model_id="my-org/custom-model", template=template("llama-2")
    )
    request = build_request(backend, Parameters(), TURNS[:1])
    assert request.payload["inputs"] == "<s>[INST] Hello [/INST]"
    assert request.payload["parameters"]["stop"] == ["</s>", "\nUser:"]


def test_llama_cpp_props_give_the_template(fake):
    from chatbot.services.discovery import with_server_facts

    config = json.loads((DATA / "gemma.tokenizer_config.json").read_text())
    fake.props = {
        "chat_template": config["chat_template"],
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "default_generation_settings": {"n_ctx": 4096},
    }
    backend = with_server_facts(Backend(api="completions", url=fake.url + "/v1", model_id="local"))
    assert backend.context_length == 4096
    request = build_request(backend, Parameters(), TURNS[:1])
    assert request.payload["prompt"] == "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_the_template_comes_from_the_hub_and_is_kept_for_offline_use(fake):
    from chatbot.services import discovery

    path = "/my-org/model-x/resolve/main/tokenizer_config.json"
    fake.hub = {path: json.loads((DATA / "llama-2.tokenizer_config.json").read_text())}
    backend = Backend(
        api="text-generation", url=fake.task_url("my-org/model-x"), model_id="my-org/model-x", token=TOKEN
    )
    request = build_request(discovery.with_server_facts(backend), Parameters(), TURNS[:1])
    assert request.payload["inputs"] == "<s>[INST] Hello [/INST]"
    hub_request = next(r for r in fake.lookups if r.path == path)
    assert "Authorization" not in hub_request.headers  # a local server's key never goes to the Hub (issue 13)

    fake.hub = {}  # offline now, and a new process
    remembered.forget_all()
    request = build_request(discovery.with_server_facts(backend), Parameters(), TURNS[:1])
    assert request.payload["inputs"] == "<s>[INST] Hello [/INST]"


def test_without_a_template_anywhere_the_built_in_format_is_used(fake):
    from chatbot.services import discovery

    backend = discovery.with_server_facts(
        Backend(api="text-generation", url=fake.task_url(), model_id="google/gemma-7b-it")
    )
    assert backend.template is None
    assert build_request(backend, Parameters(), TURNS[:1]).payload["inputs"].startswith("<bos><start_of_turn>user")
