"""The live catalogue (GET /v1/models) against the fake router: the picker, context lengths, models not live."""

import re

from chatbot import create_app, picker
from chatbot.generation import ReplySettings, run_reply
from chatbot.services import catalogue
from chatbot.services.inference import Backend, Parameters
from config import load_config
from tests.conftest import app_environment
from tests.fakes.hf_server import ROUTER_MODELS, TOKEN
from tests.servers import GunicornApp
from tests.test_pages import csrf, open_chat

NOT_SUPPORTED = {
    "error": {
        "message": "The requested model 'google/gemma-7b-it' is not supported by any provider you have enabled.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_supported",
    }
}


def router_config(fake, **settings):
    return load_config({"API_URL": fake.url + "/v1", "HF_API_TOKEN": TOKEN, **settings})


def test_the_routers_catalogue_is_read_as_documented(fake):
    fake.catalogue = ROUTER_MODELS
    listed = {model.id: model for model in catalogue.models(fake.url + "/v1")}
    llama = listed["meta-llama/Llama-3.1-8B-Instruct"]
    assert llama.live and llama.context_length == 131072  # the longest of its live providers
    assert llama.describe() == "context 131,072 tokens · novita, groq · $0.02 / $0.05 per M tokens in / out"
    assert "images" in listed["google/gemma-3-27b-it"].describe()
    assert not listed["google/gemma-2-9b-it"].live  # its only provider reports an error
    assert catalogue.find(list(listed.values()), "meta-llama/Llama-3.1-8B-Instruct:cheapest") is llama


def test_a_local_servers_bare_list_counts_as_live(fake):
    fake.catalogue = [{"id": "llama3.2", "object": "model"}]
    [model] = catalogue.models(fake.url + "/v1/chat/completions")
    assert model.id == "llama3.2" and model.live and model.describe() == ""


def test_the_catalogue_is_asked_once_and_kept_for_when_the_server_has_none(fake):
    fake.catalogue = ROUTER_MODELS
    catalogue.models(fake.url + "/v1")
    catalogue.models(fake.url + "/v1")
    assert [lookup.path for lookup in fake.lookups].count("/v1/models") == 1
    catalogue.forget()
    fake.catalogue = None  # the server answers 404 now, as when offline
    assert len(catalogue.models(fake.url + "/v1")) == len(ROUTER_MODELS)


def test_live_models_of_the_same_family_or_size_are_suggested(fake):
    fake.catalogue = ROUTER_MODELS
    listed = catalogue.models(fake.url + "/v1")
    assert catalogue.similar(listed, "google/gemma-7b-it")[0] == "google/gemma-3-27b-it"
    assert "google/gemma-2-9b-it" not in catalogue.similar(listed, "google/gemma-7b-it")  # not live
    assert catalogue.similar(listed, "mistralai/mistral-7b-instruct")[0] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert catalogue.similar(listed, "tiiuae/falcon-7b-instruct") == ["mistralai/Mistral-7B-Instruct-v0.3"]  # 7b


def test_the_picker_offers_the_catalogue_and_its_context_lengths(fake):
    fake.catalogue = ROUTER_MODELS
    config = router_config(fake, MODEL_ID="meta-llama/Llama-3.1-8B-Instruct")
    choices = {choice.name: choice for choice in picker.choices(config)}
    assert list(choices)[0] == "meta-llama/Llama-3.1-8B-Instruct"  # the configured one first
    assert choices["meta-llama/Llama-3.1-8B-Instruct"].spec.context_length == 131072
    assert choices["openai/gpt-oss-20b"].spec.url == fake.url + "/v1"
    assert "google/gemma-2-9b-it" not in choices
    assert picker.not_live(config) == []


def test_a_model_that_is_not_live_is_named_with_live_ones_like_it(fake):
    fake.catalogue = ROUTER_MODELS
    [line] = picker.not_live(router_config(fake))  # MODEL_ID is the notes' google/gemma-7b-it
    assert line.startswith(f"The model google/gemma-7b-it is not served at {fake.url}/v1 now (it is not in the ")
    assert "Live models like it: google/gemma-3-27b-it" in line
    [line] = picker.not_live(router_config(fake, MODEL_ID="google/gemma-2-9b-it"))
    assert "(its providers all report an error)" in line


def test_the_chat_names_live_models_when_the_router_refuses_one(store, fake):
    fake.catalogue = ROUTER_MODELS
    fake.reply(status=400, body=NOT_SUPPORTED)
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="google/gemma-7b-it", token=TOKEN)
    settings = ReplySettings(backend=backend, parameters=Parameters())
    answer = run_reply(store, store.create_conversation("alice"), "Hello", settings, lambda event: None)
    assert answer.error["kind"] == "not_found"
    assert "not supported by any provider" in answer.error["message"]
    assert answer.error["hint"].startswith("Live models like it: google/gemma-3-27b-it")


def test_doctor_says_the_model_is_not_live(tmp_path, fake):
    fake.catalogue = ROUTER_MODELS
    fake.reply(status=400, body=NOT_SUPPORTED)
    app = create_app({"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": fake.url + "/v1"})
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1
    assert "FAIL The model google/gemma-7b-it is not served at" in result.output
    assert "-> Live models like it: google/gemma-3-27b-it" in result.output


def test_a_catalogue_model_picked_on_the_page_is_the_one_asked(tmp_path, fake):
    fake.catalogue = ROUTER_MODELS
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db",
            "API_URL": fake.url + "/v1",
            "HF_API_TOKEN": TOKEN,
            "MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct",
        }
    )
    client = app.test_client()
    chat = open_chat(client)
    page = client.get(chat).text
    assert re.search(r'<option value="openai/gpt-oss-20b">context 131,072 tokens · cerebras · \$0.25', page)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(page), "message": "hi", "model": "openai/gpt-oss-20b"})
    assert fake.requests[-1].json["model"] == "openai/gpt-oss-20b"
    assert 'value="openai/gpt-oss-20b" autocomplete="off"' in client.get(chat).text


def test_start_up_warns_of_a_model_that_is_not_live(tmp_path, fake_hf):
    fake_hf.catalogue = ROUTER_MODELS
    environment = app_environment(
        tmp_path, API_URL=fake_hf.url + "/v1", INFERENCE_API="", HF_API_TOKEN=TOKEN, CHAT_HUB_CACHE=str(tmp_path)
    )
    with GunicornApp(environment, log=tmp_path / "gunicorn.log"):
        pass
    fake_hf.catalogue = None
    assert "Warning: The model google/gemma-7b-it is not served at" in (tmp_path / "gunicorn.log").read_text()
