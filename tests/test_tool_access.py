"""Which MCP servers' tools a chat is offered: the admin page lists the servers, whether each answers now and its
tools, and which accounts may use which; a chat's Settings switch each one off for that chat; a server that does
not answer offers nothing, and the answer says so under it."""

from __future__ import annotations

import json
import re

import pytest

from chatbot.chat import tool_access
from chatbot.local_model.server import free_port
from chatbot.services import mcp_client, remembered
from chatbot.services.tool_servers import ToolServer
from tests.fakes.mcp_server import FakeMcpServer
from tests.helpers import csrf, post, sign_in, sign_up

ECHO = ("call_1", "web__echo", '{"text": "hi"}')


@pytest.fixture(autouse=True)
def fresh():
    remembered.forget_all()
    yield
    mcp_client.forget_connections()


@pytest.fixture
def chat_app(make_app, fake, mcp_log):
    """Accounts, a model on the chat API, and three MCP servers: web and files (the fake MCP server, web with a
    secret header) and down (an address that refuses)."""
    models = [{"name": "Router chat", "id": "meta-llama/Llama-3.1-8B-Instruct", "api": "chat", "url": fake.url + "/v1"}]
    servers = [
        {"name": "web", "url": mcp_log.url, "headers": {"X-Secret": "hidden-value-123"}, "trust": "auto"},
        {"name": "files", "url": mcp_log.url, "trust": "auto"},
        {"name": "down", "url": f"http://127.0.0.1:{free_port()}/mcp"},
    ]
    return make_app(MODELS=json.dumps(models), MCP_SERVERS=json.dumps(servers))


def offered(request) -> set[str]:
    """The servers whose tools a request to the model offered."""
    return {tool["function"]["name"].split("__")[0] for tool in request.json.get("tools", [])}


def test_the_admin_page_lists_each_server_whether_it_answers_and_its_tools_never_its_secrets(chat_app):
    admin = chat_app.test_client()
    sign_up(admin, "ada")
    page = admin.get("/admin/").text
    web = re.search(r'<tr id="server-web">.*?</tr>', page, re.S).group(0)
    assert "streamable HTTP" in web and "calls freely" in web and "answers (9 tools)" in web
    assert "<code>echo</code>: Say `text` back, `times` times." in web
    down = re.search(r'<tr id="server-down">.*?</tr>', page, re.S).group(0)
    assert "asks before each call" in down
    assert "does not answer: The MCP server down could not be reached: connection refused." in down
    assert "<code>" not in down  # no tools
    assert "hidden-value-123" not in page and "X-Secret" not in page


def test_the_admin_page_shows_what_each_server_said_a_moment_ago_and_check_again_asks_them_now(make_app, tmp_path):
    """Each render no longer waits on every server (up to 3 s each): what they said is shown, and how long ago, for
    STATUS_SECONDS; "Check again" (a form post) asks them now."""
    mcp = FakeMcpServer(tmp_path / "calls.log")
    try:
        app = make_app(MCP_SERVERS=json.dumps([{"name": "web", "url": mcp.url, "trust": "auto"}]))
        admin = app.test_client()
        sign_up(admin, "ada")
        first = admin.get("/admin/").text
        assert "answers (9 tools)" in first and re.search(r"checked \d+ s ago", first)
        mcp.stop()  # it goes down: the page says what it said a moment ago, without asking it again
        assert "answers (9 tools)" in admin.get("/admin/").text
        checked = admin.post("/admin/servers/check", data={"csrf_token": csrf(first)})
        assert checked.status_code == 302 and checked.location.endswith("/admin/#tool-servers")
        now = admin.get("/admin/").text
        web = re.search(r'<tr id="server-web">.*?</tr>', now, re.S).group(0)
        assert "does not answer: The MCP server web " in web and re.search(r"checked \d+ s ago", web)
        assert admin.post("/admin/servers/check").status_code == 400  # no CSRF token: refused
    finally:
        mcp.stop()


def test_an_account_is_offered_only_the_servers_the_admin_allows_and_a_call_to_another_is_refused(chat_app, fake):
    admin, bob = chat_app.test_client(), chat_app.test_client()
    sign_up(admin, "ada")
    sign_up(bob, "bob")
    post(admin, "/admin/accounts/bob", action="approve")
    page = admin.get("/admin/").text
    assert page.count('name="servers" value="web" checked') == 2  # every server, for ada and bob, by default
    done = post(admin, "/admin/accounts/bob", action="servers", servers="files")
    assert "bob may use files." in done.text
    assert re.search(r'id="account-bob".*?value="web">', done.text, re.S)  # unticked now
    sign_in(bob, "bob")
    chat = bob.get("/").location
    assert 'value="web"' not in bob.get(chat).text  # his Settings switch only what he may use
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["Done."])
    post(bob, f"{chat}/messages", message="hi")
    assert offered(fake.requests[0]) == {"files"}
    result = fake.requests[-1].json["messages"][-1]
    assert result["role"] == "tool" and result["content"].startswith("There is no tool named 'web__echo'.")
    fake.requests.clear()
    fake.reply(tokens=["Hi."])
    post(admin, f"{admin.get('/').location}/messages", message="hi")
    assert offered(fake.requests[0]) == {"web", "files"}  # ada may use every server (down offers nothing)
    assert (
        "bob may use every tool server."
        in post(admin, "/admin/accounts/bob", action="servers", servers=["web", "files", "down"]).text
    )


def test_a_chat_switches_a_server_off_in_its_settings_without_javascript(chat_app, fake):
    client = chat_app.test_client()
    sign_up(client, "ada")
    chat = client.get("/").location
    page = client.get(chat).text
    for name in ("web", "files", "down"):
        assert f'name="tools_on" type="checkbox" value="{name}" checked' in page
    fields = {"csrf_token": csrf(page), "tool_switches": "shown", "tools_on": ["files"], "max_new_tokens": "64"}
    assert client.post(f"{chat}/settings", data=fields).status_code == 302
    page = client.get(chat).text
    assert 'value="web">' in page and 'value="files" checked' in page and 'value="down">' in page
    fake.reply(tokens=["Hi."])
    answered = post(client, f"{chat}/messages", message="hi")
    assert offered(fake.requests[-1]) == {"files"}
    assert answered.status_code in (302, 303) and "did not answer" not in client.get(chat).text  # down: off here
    other = post(client, "/c").location
    fake.reply(tokens=["Hi."])
    post(client, f"{other}/messages", message="hi")
    assert offered(fake.requests[-1]) == {"web", "files"}  # another chat: every server on


def test_a_server_that_does_not_answer_is_named_under_the_answer(chat_app, fake):
    client = chat_app.test_client()
    sign_up(client, "ada")
    chat = client.get("/").location
    fake.reply(tokens=["Hi."])
    post(client, f"{chat}/messages", message="hi")
    page = client.get(chat).text
    assert "The tool server <code>down</code> did not answer, so its tools were not offered." in page
    assert "<code>web</code> did not answer" not in page


def test_switches_and_access_narrow_the_servers():
    servers = (ToolServer("web"), ToolServer("files"))
    assert tool_access.for_account(servers, None) == servers
    assert tool_access.for_account(servers, ["files"]) == (servers[1],)
    chosen: dict = {}
    tool_access.switch(chosen, servers, ["files"])
    assert chosen == {"tools_off": ["web"]}
    assert tool_access.switched_on(servers, chosen) == (servers[1],)
    assert tool_access.switches(servers, chosen) == [("web", False), ("files", True)]
