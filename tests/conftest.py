"""Fixtures: the app with a fresh store, the fake Hugging Face API, real servers."""

from __future__ import annotations

import contextlib
import socket

import pytest
import redis

from chatbot.local_model.server import RECOMMENDED, LocalModelServer
from chatbot.services import remembered
from chatbot.web import create_app
from tests import postgres
from tests.fakes.hf_server import TOKEN, FakeHuggingFace
from tests.fakes.mcp_server import FakeMcpServer
from tests.servers import REDIS_URL, UNLIMITED, GunicornApp

LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def nothing_leaves_the_machine(monkeypatch):
    """A test that would reach a host other than this machine fails (this process; the servers it starts are
    pointed at the fakes by their settings)."""
    reached = []

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(host).endswith(".invalid"):  # a reserved name that never resolves: answered here, as a resolver would
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host is not None and str(host) not in LOOPBACK and not str(host).startswith("127."):
            reached.append(host)
            raise OSError(f"tests do not reach {host}")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    assert not reached, f"the test tried to reach {reached}"


@pytest.fixture(autouse=True)
def no_model_titles(monkeypatch):
    """Answers without the extra request that titles a chat (test_titles.py turns it on): every other test
    counts the backend's requests and reads the last one."""
    monkeypatch.setenv("MODEL_TITLES", "false")


@pytest.fixture(scope="session")
def fake_hf(tmp_path_factory):
    """The fake, also standing in for the Hub (HF_ENDPOINT) for this process and the servers it starts."""
    with FakeHuggingFace() as fake, pytest.MonkeyPatch.context() as environment:
        environment.setenv("HF_ENDPOINT", fake.url)
        environment.setenv("CHAT_HUB_CACHE", str(tmp_path_factory.mktemp("hub")))
        yield fake


@pytest.fixture
def fake(fake_hf, tmp_path, monkeypatch):
    """The fake with no queued replies and no recorded requests, and nothing kept on disk from other tests."""
    monkeypatch.setenv("CHAT_HUB_CACHE", str(tmp_path / "hub"))
    while not fake_hf.replies.empty():
        fake_hf.replies.get_nowait()
    fake_hf.requests.clear()
    fake_hf.lookups.clear()
    fake_hf.require_token = True
    fake_hf.unauthorized_body = fake_hf.info = fake_hf.props = None
    fake_hf.hub = {}
    fake_hf.catalogue = fake_hf.context_window = None
    fake_hf.catalogue_drip = 0.0
    fake_hf.refuses_tools = False
    remembered.forget_all()
    return fake_hf


@pytest.fixture(scope="session")
def postgres_database():
    """This checkout's database on the machine's PostgreSQL (TEST_PG_DB), made empty for the run and dropped after;
    its URL. Tests keep their tables apart in schemas of their own (tests/postgres.py)."""
    with postgres.new_database() as url:
        yield url


@pytest.fixture
def store_url(tmp_path):
    """Where `app` keeps its chats: a SQLite file; a test module whose point is not the store may say memory://."""
    return f"sqlite:///{tmp_path}/chat.sqlite3"


@pytest.fixture
def app(store_url, fake):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "CHAT_STORE_URL": store_url,
            "API_URL": fake.task_url(),
            "HF_API_TOKEN": TOKEN,
            "READ_TIMEOUT": 5.0,
            "MAX_LOADING_WAIT": 0.0,
        }
    )


@pytest.fixture
def make_app(tmp_path, fake):
    """Makes the app with accounts (AUTH=local) on one SQLite file, `settings` on top; called again, the same
    store and key."""

    def make(**settings):
        base = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/chat.sqlite3", "AUTH": "local"}
        return create_app({**base, "API_URL": fake.task_url(), "HF_API_TOKEN": TOKEN, **settings})

    return make


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app):
    return app.extensions["chat_store"]


def app_environment(tmp_path, **extra: str) -> dict[str, str]:
    """The environment for the app under gunicorn: a fresh store, no .env surprises, and no limits on use (one
    server takes every test's messages from 127.0.0.1; test_limits.py sets them). The test Redis keeps nothing on
    disk (make redis), which the chat refuses unless told."""
    return {
        **UNLIMITED,
        "REDIS_KEEPS_NOTHING": "accept",
        "MODEL_TITLES": "false",
        "SECRET_KEY": "gunicorn-test-secret",
        "CHAT_STORE_URL": f"sqlite:///{tmp_path}/chat.sqlite3",
        "HF_API_TOKEN": "",
        "HF_TOKEN": "",
        "API_URL": "",
        "INFERENCE_API": "text-generation",
        "MODEL_ID": "google/gemma-7b-it",
        **extra,
    }


@pytest.fixture(scope="session")
def gunicorn_on_fake(tmp_path_factory, fake_hf):
    """The app under gunicorn (2 gthread workers) talking to the fake Hugging Face API."""
    environment = app_environment(
        tmp_path_factory.mktemp("gunicorn"), API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN, READ_TIMEOUT="5"
    )
    with GunicornApp(environment) as server:
        yield server


@contextlib.contextmanager
def two_instances(folder, fake_hf, store_url: str):
    """Two instances sharing the store at `store_url`, as on two hosts: 4 gevent workers, and 4 gthread workers."""
    environment = app_environment(
        folder, API_URL=fake_hf.task_url(), HF_API_TOKEN=TOKEN, READ_TIMEOUT="5", CHAT_STORE_URL=store_url
    )
    with (
        GunicornApp({**environment, "WORKER_CLASS": "gevent"}, workers=4) as first,
        GunicornApp(environment, workers=4) as second,
    ):
        yield first, second


@pytest.fixture(scope="session")
def two_instances_on_redis(tmp_path_factory, fake_hf):
    """Two instances sharing one Redis, as on two hosts."""
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    with two_instances(tmp_path_factory.mktemp("instances"), fake_hf, REDIS_URL) as both:
        yield both


@pytest.fixture(scope="session")
def two_instances_on_postgres(tmp_path_factory, fake_hf, postgres_database):
    """Two instances sharing one PostgreSQL database, as on two hosts."""
    with (
        postgres.new_schema("instances", postgres_database) as url,
        two_instances(tmp_path_factory.mktemp("instances"), fake_hf, url) as both,
    ):
        yield both


@pytest.fixture(
    params=[
        "one instance: gthread, SQLite",
        "two instances: gevent and gthread, Redis",
        "two instances: gevent and gthread, PostgreSQL",
    ]
)
def instances(request, gunicorn_on_fake):
    """Where a first tab and a later one open: the same server, or two instances sharing Redis or PostgreSQL (4
    workers each)."""
    if request.param.startswith("one"):
        return gunicorn_on_fake, gunicorn_on_fake
    return request.getfixturevalue(
        "two_instances_on_redis" if "Redis" in request.param else "two_instances_on_postgres"
    )


@pytest.fixture(scope="session")
def local_model(tmp_path_factory):
    """The real llama.cpp server (built as `make run` builds it) with SmolLM2-135M-Instruct from PyPI."""
    with LocalModelServer(log=tmp_path_factory.mktemp("local-model") / "local-model.log") as server:
        yield server


@pytest.fixture(scope="session")
def gunicorn_on_local_model(tmp_path_factory, local_model):
    """The app under gunicorn on the built-in model, set up as `make run` sets it up."""
    environment = app_environment(tmp_path_factory.mktemp("local"), **local_model.app_environment(), **RECOMMENDED)
    with GunicornApp(environment) as server:
        yield server


@pytest.fixture(scope="session")
def mcp_http(tmp_path_factory):
    """The fake MCP server over streamable HTTP on 127.0.0.1 (tests/fakes/mcp_server.py), for the whole run."""
    fake = FakeMcpServer(tmp_path_factory.mktemp("mcp") / "calls.log")
    yield fake
    fake.stop()


@pytest.fixture
def mcp_log(mcp_http):
    """What the fake MCP server was asked during this test (the log of each earlier test gone)."""
    mcp_http.log.unlink(missing_ok=True)
    return mcp_http
