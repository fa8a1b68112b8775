"""The live catalogue (GET /v1/models) against the fake router: the picker, context lengths, models not live."""

import re
import time

import pytest
import requests

from chatbot.chat import picker
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services import catalogue, remembered
from chatbot.services.errors import hint_for
from chatbot.services.inference import Backend, Parameters
from chatbot.services.settings import load_settings
from chatbot.web import create_app
from tests.conftest import app_environment
from tests.fakes.hf_server import ROUTER_MODELS, TOKEN
from tests.helpers import csrf, open_chat
from tests.servers import GunicornApp

NOT_SUPPORTED = {
    "error": {
        "message": "The requested model 'google/gemma-7b-it' is not supported by any provider you have enabled.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_supported",
    }
}


def router_config(fake, **settings):
    return load_settings({"API_URL": fake.url + "/v1", "HF_API_TOKEN": TOKEN, **settings})


def router_app(tmp_path, fake, **settings):
    """The app on the fake's OpenAI-compatible API, whose catalogue the picker offers."""
    store = f"sqlite:///{tmp_path}/c.db"
    return create_app(
        {"TESTING": True, "SECRET_KEY": "t", "CHAT_STORE_URL": store, "API_URL": fake.url + "/v1", **settings}
    )


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
    remembered.forget_all()
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
    assert "set MODEL_ID in .env" in hint_for(answer.error, runs_the_chat=True)
    for_a_user = hint_for(answer.error, runs_the_chat=False)  # a model not live: what the user can do
    assert for_a_user.startswith("Live models like it: google/gemma-3-27b-it") and ".env" not in for_a_user
    assert for_a_user.endswith("Pick one in the model menu.")


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
    client = router_app(tmp_path, fake, HF_API_TOKEN=TOKEN, MODEL_ID="meta-llama/Llama-3.1-8B-Instruct").test_client()
    chat = open_chat(client)
    page = client.get(chat).text
    assert re.search(r'<option value="openai/gpt-oss-20b">context 131,072 tokens · cerebras · \$0.25', page)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(page), "message": "hi", "model": "openai/gpt-oss-20b"})
    assert fake.requests[-1].json["model"] == "openai/gpt-oss-20b"
    assert 'value="openai/gpt-oss-20b" autocomplete="off"' in client.get(chat).text


def router_environment(tmp_path, fake_hf):
    return app_environment(
        tmp_path, API_URL=fake_hf.url + "/v1", INFERENCE_API="", HF_API_TOKEN=TOKEN, CHAT_HUB_CACHE=str(tmp_path)
    )


def test_start_up_warns_of_a_model_that_is_not_live(tmp_path, fake_hf):
    fake_hf.catalogue = ROUTER_MODELS
    log = tmp_path / "gunicorn.log"
    try:
        with GunicornApp(router_environment(tmp_path, fake_hf), log=log):
            deadline = time.monotonic() + 10  # the catalogue is asked beside start-up, not before it
            while "Warning: The model" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        fake_hf.catalogue = None
    assert "Warning: The model google/gemma-7b-it is not served at" in log.read_text()


@pytest.mark.timeout(60)
def test_a_catalogue_that_drips_holds_neither_start_up_nor_a_page(tmp_path, fake_hf):
    fake_hf.catalogue, fake_hf.catalogue_drip = ROUTER_MODELS, 2.0  # a byte every 2 s: 40 minutes for it all
    started = time.monotonic()
    try:
        with GunicornApp(router_environment(tmp_path, fake_hf)) as app:
            up = time.monotonic() - started
            page = requests.get(app.url + "/", timeout=30)
            asked = time.monotonic() - started - up
    finally:
        fake_hf.catalogue, fake_hf.catalogue_drip = None, 0.0
    assert page.status_code == 200 and "Message google/gemma-7b-it" in page.text
    assert up < 8 and asked < catalogue.FIRST_WAIT + 4


@pytest.mark.timeout(30)
def test_a_catalogue_that_drips_holds_a_page_a_moment_at_most_and_is_given_up_in_time(fake, monkeypatch):
    fake.catalogue, fake.catalogue_drip = ROUTER_MODELS, 0.5
    monkeypatch.setattr(catalogue, "ASK_SECONDS", 1.0)
    started = time.monotonic()
    assert catalogue.models(fake.url + "/v1") == []  # a page: it waits FIRST_WAIT for a first answer, no more
    assert catalogue.models(fake.url + "/v1") == []  # the next one does not wait again
    assert time.monotonic() - started < catalogue.FIRST_WAIT + 0.5
    assert catalogue.models(fake.url + "/v1", wait=10) == []  # the doctor waits for the end of the ask ...
    assert time.monotonic() - started < 1.0 + 0.5 + 1  # ... cut off after ASK_SECONDS and a byte more


UNREADABLE = [
    {"id": "w", "architecture": "text"},
    {"id": "v", "architecture": {"input_modalities": 5}},
    {"id": 7},
    "a model",
    {"id": "x" * 100_000},
    {"id": "p", "providers": [{"provider": ["novita"], "status": "live"}]},
    {"id": "q", "providers": "novita"},
]


def test_entries_that_cannot_be_read_are_left_out_and_counted_in_the_log(fake, caplog):
    fake.catalogue = [*UNREADABLE[:3], *ROUTER_MODELS, *UNREADABLE[3:]]
    listed = catalogue.models(fake.url + "/v1")
    assert [model.id for model in listed] == [model["id"] for model in ROUTER_MODELS]
    assert f"The model catalogue of {fake.url}/v1: 7 entries could not be read and are left out" in caplog.text


def test_a_page_answers_when_the_catalogue_has_entries_it_cannot_read(tmp_path, fake):
    fake.catalogue = [*UNREADABLE, *ROUTER_MODELS]
    client = router_app(tmp_path, fake).test_client()
    page = client.get(open_chat(client))
    assert page.status_code == 200 and '<option value="openai/gpt-oss-20b">' in page.text


def test_a_catalogue_past_its_size_is_not_read_and_one_past_its_count_is_cut(fake, caplog):
    fake.catalogue = [{"id": f"org/model-{number}", "name": "m" * 100_000} for number in range(50)]  # 5 MB
    assert catalogue.models(fake.url + "/v1") == []
    remembered.forget_all()
    fake.catalogue = [{"id": f"org/model-{number}"} for number in range(100_000)]
    listed = catalogue.models(fake.url + "/v1")
    assert len(listed) == catalogue.MAX_MODELS and listed[-1].id == f"org/model-{catalogue.MAX_MODELS - 1}"
    assert f"{100_000 - catalogue.MAX_MODELS} entries past the first {catalogue.MAX_MODELS} are left out" in caplog.text


def test_a_page_lists_a_bounded_number_of_models_and_typing_in_the_picker_searches_them_all(tmp_path, fake):
    fake.catalogue = [{"id": f"org/model-{number}"} for number in range(5000)]
    client = router_app(tmp_path, fake).test_client()
    chat = open_chat(client)
    page = client.get(chat).text
    listed = re.search(r'<datalist id="model-options">(.*?)</datalist>', page, re.S).group(1)
    assert listed.count("<option ") == picker.LISTED and "Type to search 1001 models" in page
    found = client.get("/models", query_string={"model": "MODEL-99"}).text  # past the first hundred, in any case
    assert re.findall(r'<option value="([^"]+)">', found) == ["org/model-99", *(f"org/model-99{d}" for d in range(10))]
    client.post(f"{chat}/messages", data={"csrf_token": csrf(page), "message": "hi", "model": "org/model-999"})
    assert fake.requests[-1].json["model"] == "org/model-999"


def test_the_picker_says_a_model_takes_tools_when_models_says_so_whatever_its_catalogue_says():
    models = '[{"id": "a", "tools": true}, {"id": "b", "tools": false}, {"id": "c"}]'
    config = load_settings({"MODELS": models, "API_URL": "http://127.0.0.1:9/v1"})
    listing = catalogue.CatalogueModel("b", offers=(catalogue.Offer("p", True, tools=True),))
    marked, refused, unsaid = (picker.Choice(spec.name, "", spec) for spec in config["MODELS"])
    assert "tools" in marked.facts() and "tools" not in unsaid.facts()
    assert "tools" not in picker.Choice("b", "", refused.spec, listing).facts()
    assert "tools" in picker.Choice("c", "", unsaid.spec, listing).facts()
