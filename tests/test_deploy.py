"""As the user deploys it: gunicorn (4 workers) behind Debian's nginx, health checks, HTTPS behind the proxy."""

import subprocess
import time

import pytest
import requests
import websocket

from chatbot.local_model.server import free_port
from chatbot.web import create_app
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import streamed_text
from tests.servers import FINISHED, ROOT, ChatClient, GunicornApp

NGINX = "/usr/sbin/nginx"


def test_healthz_and_readyz(client, tmp_path):
    assert client.get("/healthz").json == {"ok": True}
    assert client.get("/readyz").json == {"ready": True}
    url = f"http://127.0.0.1:{free_port()}/v1"
    down = create_app(
        {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": url, "INFERENCE_API": "chat"}
    ).test_client()
    response = down.get("/readyz")
    assert response.status_code == 503
    assert response.json["backend"] == f"{url} does not answer: ConnectionError"


def test_behind_an_https_proxy_the_cookie_is_secure(tmp_path, fake):
    app = create_app(
        {
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db",
            "PROXY_COUNT": 1,
            "ALLOWED_HOSTS": ("chat.example.org",),
            "AUTH": "none",
            "API_URL": fake.task_url(),
            "HF_API_TOKEN": TOKEN,
        }
    )
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.org", "X-Forwarded-For": "10.0.0.9"}
    client = app.test_client()
    response = client.get("/", headers=proxied)
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.location == "/c/" + response.location.rsplit("/", 1)[-1]
    assert "Secure" not in app.test_client().get("/").headers["Set-Cookie"]  # plain http: no Secure flag


PEOPLE = [("ada", "ada-password-1"), ("bob", "bob-password-2")]  # who nginx lets in (basic auth)


@pytest.fixture(scope="module")
def nginx_in_front(tmp_path_factory, fake_hf):
    """Debian's nginx with deploy/nginx.conf (paths and ports made local) before gunicorn with 4 workers."""
    folder = tmp_path_factory.mktemp("nginx")
    environment = app_environment(
        folder,
        API_URL=fake_hf.task_url(),
        HF_API_TOKEN=TOKEN,
        PROXY_COUNT="1",
        ALLOWED_HOSTS="chat.example.org",
        AUTH="header",
    )
    with GunicornApp(environment, workers=4) as app:
        port = free_port()
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("127.0.0.1:8000", f"127.0.0.1:{app.port}").replace(
            "listen 80;", f"listen 127.0.0.1:{port};"
        )
        site = site.replace("/srv/chatbot/static/", f"{ROOT}/static/")
        site = site.replace("#auth_basic", "auth_basic").replace(
            "#proxy_set_header X-Forwarded-User", "proxy_set_header X-Forwarded-User"
        )
        site = site.replace("/etc/nginx/chat.htpasswd", str(folder / "htpasswd"))
        (folder / "htpasswd").write_text("".join(f"{name}:{{PLAIN}}{password}\n" for name, password in PEOPLE))
        (folder / "nginx.conf").write_text(
            f"daemon off; user root; pid {folder}/nginx.pid; error_log {folder}/error.log;\n"
            f"events {{}}\nhttp {{ include /etc/nginx/mime.types; access_log off;\n"
            f"client_body_temp_path {folder}; proxy_temp_path {folder};\n{site}\n}}\n"
        )
        nginx = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")])
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
        nginx.terminate()
        nginx.wait(timeout=10)


def signed_in(name: str, password: str) -> requests.Session:
    """A browser that signs in to nginx (basic auth), which names it to the chat (AUTH=header)."""
    http = requests.Session()
    http.auth = (name, password)
    return http


def test_a_streamed_chat_through_nginx(nginx_in_front, fake):
    static = requests.get(nginx_in_front + "/static/vendor/htmx-2.0.11.min.js", auth=PEOPLE[0], timeout=5)
    assert static.ok and static.headers["Server"].startswith("nginx")
    assert static.headers["Cache-Control"].startswith("max-age=3600")  # nginx's own header: gunicorn never saw it
    chat = ChatClient(nginx_in_front, http=signed_in(*PEOPLE[0]))
    with pytest.raises(websocket.WebSocketBadStatusException):  # the origin check still holds behind the proxy
        chat.connect(origin="http://evil.example")
    fake.reply(tokens=["Through", " the", " proxy"], delay=0.05)
    frames = chat.exchange("Hello nginx")
    assert FINISHED.search(frames[-1]).group(2) == "done"
    assert streamed_text(frames) == "Through the proxy" and len(frames) >= 4
    assert "Hello nginx" in chat.page()
    ready = requests.get(nginx_in_front + "/readyz", auth=PEOPLE[0], timeout=5)
    assert ready.json() == {"ready": True}


def test_nginx_signs_people_in_and_no_one_names_themselves(nginx_in_front, fake):
    assert requests.get(nginx_in_front + "/", timeout=5).status_code == 401  # nginx asks for a sign-in
    ada = ChatClient(nginx_in_front, http=signed_in(*PEOPLE[0]))
    fake.reply(tokens=["For", " ada"])
    ada.exchange("Only mine")
    bob = signed_in(*PEOPLE[1])
    pretending = bob.get(ada.page_url, headers={"X-Forwarded-User": "ada"}, timeout=5)
    assert pretending.status_code == 404  # nginx put bob in the header: ada's chat is not his
    page = bob.get(nginx_in_front + "/", timeout=5).text
    assert "Signed in as <strong>bob</strong>" in page and "Only mine" not in page


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_two_instances_share_conversations_through_their_store(request, store, fake):
    first, second = request.getfixturevalue(f"two_instances_on_{store}")
    chat = ChatClient(first.url)
    fake.reply(tokens=["Started", " on", " one"])
    chat.exchange("Hello from the first")
    fake.reply(tokens=["Continued", " on", " two"])
    chat.via(second.url).exchange("And now the second")
    page = chat.via(second.url).page()
    assert "Started on one" in page and "Continued on two" in page
    assert "Started on one" in fake.requests[-1].json["inputs"]
