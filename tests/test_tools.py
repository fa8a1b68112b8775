"""The tools offered to an answer (chatbot/services/tools.py), on the real fake MCP server over streamable HTTP:
names unique per server, the `tools` list, arguments checked, results bounded, failures in words."""

from __future__ import annotations

import socket
import time

import pytest

from chatbot.services import mcp_client, redaction, remembered, tools
from chatbot.services.tool_servers import ToolServer
from chatbot.services.tools import ToolCallStopped
from config import load_config
from tests.fakes.mcp_server import FakeMcpServer, stdio_server


@pytest.fixture(autouse=True)
def fresh():
    remembered.forget_all()
    yield
    mcp_client.forget_connections()


def toolbox(*servers: ToolServer, **settings: str) -> tools.Toolbox:
    config = load_config(settings)
    timeout, max_chars, connect = config["TOOL_TIMEOUT_S"], config["TOOL_RESULT_MAX_CHARS"], config["CONNECT_TIMEOUT"]
    return tools.toolbox_for(servers, timeout, max_chars, connect)


def auto(fake: FakeMcpServer, name: str = "web") -> ToolServer:
    return ToolServer(name, "auto", url=fake.url)


def test_each_servers_tools_are_offered_under_names_unique_to_it(mcp_log):
    box = toolbox(auto(mcp_log, "web"), auto(mcp_log, "backup"))
    names = [definition["function"]["name"] for definition in box.definitions()]
    assert names[:2] == ["web__echo", "web__fail"] and "backup__echo" in names and len(names) == 18
    (echo,) = [d for d in box.definitions() if d["function"]["name"] == "web__echo"]
    assert echo["type"] == "function" and echo["function"]["description"] == "Say `text` back, `times` times."
    assert echo["function"]["parameters"]["required"] == ["text"]


def test_a_server_that_asks_first_is_offered_too_and_keeps_its_trust(mcp_log):
    """Its calls wait on the approval card (tests/test_approvals.py), which reads the server's trust."""
    offered = toolbox(ToolServer("web", "ask", url=mcp_log.url)).tools["web__echo"]
    assert (offered.server.trust, offered.tool.name) == ("ask", "echo")
    assert mcp_log.logged() == []


def test_a_server_that_is_down_offers_nothing_and_the_others_still_do(mcp_log):
    down = ToolServer("down", "auto", url="http://127.0.0.1:9/mcp")
    assert [name for name in toolbox(down, auto(mcp_log)).tools if name.startswith("down")] == []
    assert "web__echo" in toolbox(down, auto(mcp_log)).tools


def test_a_server_that_does_not_answer_is_waited_for_once_then_asked_again_in_the_background(mcp_log, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the connection, never says a word
        mute = ToolServer("mute", "auto", url=f"http://127.0.0.1:{silent.getsockname()[1]}/mcp")
        started = time.monotonic()
        first = toolbox(mute, auto(mcp_log), CONNECT_TIMEOUT="1")
        assert time.monotonic() - started >= 1 and first.unanswered == ["mute"] and "web__echo" in first.tools
        started = time.monotonic()
        assert toolbox(mute, CONNECT_TIMEOUT="1").unanswered == ["mute"]
        assert time.monotonic() - started < 0.5  # remembered: no answer waits for it again
    monkeypatch.setattr(tools, "FAILED_LISTING_SECONDS", 0.0)
    back = ToolServer("back", "auto", url=mcp_log.url)  # did not answer before; answers now
    tools._listings["back"] = (time.monotonic() - 1, back, None)
    assert toolbox(back).unanswered == ["back"]  # this answer does not wait: it is asked in the background
    deadline = time.monotonic() + 10
    while toolbox(back).unanswered and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "back__echo" in toolbox(back).tools


def test_a_check_says_what_each_server_has_or_why_it_does_not_answer(mcp_log):
    down = ToolServer("down", "auto", url="http://127.0.0.1:9/mcp")
    good, bad = tools.check_servers((auto(mcp_log), down), 3.0)
    assert [tool.name for tool in good.tools][:2] == ["echo", "fail"] and not good.problem
    assert bad.tools == [] and bad.problem == "The MCP server down could not be reached: connection refused."


def test_a_call_returns_what_the_tool_said_and_how_long_it_took(mcp_log):
    result = toolbox(auto(mcp_log)).call("call_1", "web__echo", '{"text": "hi", "times": 3}')
    assert (result.call_id, result.content, result.failed) == ("call_1", "hi hi hi", False)
    assert 0 < result.seconds < 5


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ('{"text": "hi"', "The arguments are not valid JSON (Expecting ',' delimiter: line 1 column 14 (char 13))."),
        ('["hi"]', "The arguments must be a JSON object of named values. Call the tool again with one."),
        ("{}", "The arguments do not fit the tool: 'text' is a required property."),
        ('{"text": "a", "times": "two"}', "The arguments do not fit the tool: 'two' is not of type 'integer' (at"),
    ],
)
def test_arguments_that_are_not_json_or_do_not_fit_the_schema_are_answered_in_words_and_not_sent(
    mcp_log, arguments, said
):
    result = toolbox(auto(mcp_log)).call("c", "web__echo", arguments)
    assert result.failed and result.content.startswith(said)
    assert mcp_log.logged() == []


def test_no_arguments_at_all_are_an_empty_object(mcp_log):
    result = toolbox(auto(mcp_log)).call("c", "web__image", "")
    assert (result.content, result.failed, result.images[0][0]) == ("[image: image/png]", False, "image/png")


def test_a_tool_name_the_model_made_up_is_answered_with_the_real_ones(mcp_log):
    result = toolbox(auto(mcp_log)).call("c", "web__search", "{}")
    assert result.failed and result.content.startswith("There is no tool named 'web__search'. The tools are: web__echo")


def test_a_failing_tool_and_a_late_one_are_results_in_words(mcp_log):
    box = toolbox(auto(mcp_log), TOOL_TIMEOUT_S="0.5")
    failed = box.call("c", "web__fail", '{"reason": "quota exceeded"}')
    assert failed.failed and failed.content.startswith("The tool failed: ") and "quota exceeded" in failed.content
    late = box.call("c", "web__hang", "{}")
    assert (late.failed, late.content) == (True, "The MCP server web did not run hang within 0.5 s (TOOL_TIMEOUT_S).")


def test_a_huge_result_is_cut_with_a_note_the_model_sees(mcp_log):
    result = toolbox(auto(mcp_log), TOOL_RESULT_MAX_CHARS="1000").call("c", "web__huge", '{"chars": 50000}')
    assert result.content == "0123456789" * 100 + (
        "\n[The result was cut: it has 50,000 characters, only the first 1,000 are shown.]"
    )


def test_stop_while_a_call_runs_raises_and_cancels_it(mcp_log):
    import threading

    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(ToolCallStopped):
        toolbox(auto(mcp_log)).call("c", "web__hang", "{}", cancel)


def test_names_stay_unique_and_short_when_tools_collide():
    taken: list[tools.OfferedTool] = []
    server = ToolServer("s", "auto", url="http://127.0.0.1:1/mcp")
    for tool in ["a.b", "a_b", "x" * 80, "x" * 81]:
        listed = mcp_client.ServerTool("s", tool, "", {"type": "object"})
        taken.append(tools.OfferedTool(tools._unique_name("s", tool, taken), server, listed))
    assert [t.name for t in taken] == ["s__a_b", "s__a_b_2", "s__" + "x" * 61, "s__" + "x" * 59 + "_2"]


def test_a_result_that_echoes_a_configured_header_has_it_hidden(tmp_path):
    fake = FakeMcpServer(tmp_path / "log", header="Authorization: Bearer s3cret-of-the-server")
    try:
        server = ToolServer("web", "auto", url=fake.url, headers={"Authorization": "Bearer s3cret-of-the-server"})
        result = toolbox(server).call("call_1", "web__echo", '{"text": "Bearer s3cret-of-the-server"}')
        assert (result.content, result.failed) == ("Bearer hf_***", False)
    finally:
        fake.stop()


def test_an_mcp_servers_secrets_are_its_secret_looking_headers_env_and_url_parts_alone():
    remote = ToolServer(
        "web",
        url="https://me:pa55word@tools.example.org/mcp?api_key=abcd1234&page=20",
        headers={"Authorization": "Bearer t0ken-value", "X-Api-Key": "k3y-value", "Accept": "text/plain"},
    )
    local = ToolServer("files", command="tool", env={"DB_PASSWORD": "hunter22", "ROOT_DIR": "/srv/files"})
    hidden = redaction.secrets_of_servers([remote, local])
    assert sorted(hidden) == sorted(["t0ken-value", "k3y-value", "pa55word", "abcd1234", "hunter22"])
    said = "401 for https://me:pa55word@tools.example.org/mcp?api_key=abcd1234&page=20"  # a failure, for the log
    assert redaction.without_server_secrets(said, remote) == (
        "401 for https://me:hf_***@tools.example.org/mcp?api_key=hf_***&page=20"
    )


def test_a_servers_secret_written_in_a_tools_description_is_hidden_from_the_model(tmp_path):
    description = "Uses t0ken-of-the-server."
    leaky = stdio_server("leaky", tmp_path / "log", API_TOKEN="t0ken-of-the-server", MCP_FAKE_DESCRIPTION=description)
    (about,) = [d for d in toolbox(leaky).definitions() if d["function"]["name"] == "leaky__about"]
    assert about["function"]["description"] == "Uses hf_***."


def test_a_stdio_servers_secret_options_and_the_passwords_of_urls_in_its_environment_are_secrets_too():
    local = ToolServer(
        "db",
        command="npx",
        args=("db-server", "--api-key", "k3y-in-args", "--token=t0ken-in-args", "--port", "5000", "--verbose"),
        env={"DATABASE_URL": "postgres://app:pg-pa55@db:5432/app", "HOME_URL": "https://example.org/?q=1"},
        headers={},
    )
    assert sorted(redaction.secrets_of_servers([local])) == sorted(["k3y-in-args", "t0ken-in-args", "pg-pa55"])


@pytest.fixture
def hung_url():
    """The URL of a server that takes connections and never answers."""
    import contextlib
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def hold() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=hold, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    listener.close()
    for connection in held:
        connection.close()


def test_a_server_that_hangs_to_its_deadline_is_not_asked_again_by_the_very_next_answer(monkeypatch, hung_url):
    import time

    monkeypatch.setattr(tools, "FAILED_LISTING_SECONDS", 1.0)  # shorter than the deadline the server waits out
    hung = ToolServer("hung", "auto", url=hung_url)
    waits = []
    for _ in range(2):
        started = time.monotonic()
        assert not toolbox(hung, CONNECT_TIMEOUT="1.5")
        waits.append(time.monotonic() - started)
    assert waits[0] >= 1.5 and waits[1] < 0.5


def test_servers_that_hang_cost_an_answer_one_wait_not_one_each(hung_url, mcp_log):
    import time

    hung = [ToolServer(f"hung{number}", "auto", url=hung_url) for number in range(4)]
    started = time.monotonic()
    box = toolbox(*hung, auto(mcp_log), CONNECT_TIMEOUT="1.5")
    assert time.monotonic() - started < 4  # one after the other: 4 x 1.5 s and more
    assert list(box.tools)[0] == "web__echo"


def test_a_server_listing_a_flood_of_tools_is_offered_a_bounded_few_with_short_descriptions(tmp_path, caplog):
    import json

    flood = stdio_server("flood", tmp_path / "log", MCP_FAKE_FLOOD="200")
    box = toolbox(flood, CONNECT_TIMEOUT="60")
    names = list(box.tools)
    assert len(names) == tools.TOOLS_PER_SERVER and "flood__echo" in names  # its own nine, then odd floods
    assert "flood__flood_1" in names and "flood__flood_0" not in names  # an even one's schema is 50,000 long
    assert max(len(d["function"]["description"]) for d in box.definitions()) == tools.DESCRIPTION_CHARS
    assert len(json.dumps(box.definitions())) < 100_000  # not the 15 MB the server listed
    assert "100 tools of MCP server flood are not offered: their inputSchema is over 8192 characters" in caplog.text
    assert "MCP server flood lists 109 tools: only its first 64 are offered" in caplog.text


def test_a_catastrophic_pattern_in_a_tools_schema_does_not_freeze_the_chat_checking_the_arguments(mcp_log):
    import time

    started = time.monotonic()  # Python's re takes 13 s on these 27 characters, and minutes on a few more
    result = toolbox(auto(mcp_log)).call("c", "web__lookup", '{"code": "' + "a" * 26 + 'b"}')
    assert time.monotonic() - started < 3
    assert result.failed and "pattern" in result.content  # the server checked it, at once


@pytest.fixture(params=["streamable HTTP", "legacy SSE", "stdio"])
def any_transport(request, mcp_log, tmp_path):
    """The fake as server "web" over each transport."""
    if request.param == "stdio":
        yield stdio_server("web", tmp_path / "log")
    elif request.param == "legacy SSE":
        fake = FakeMcpServer(tmp_path / "log", transport="sse")
        yield ToolServer("web", "auto", url=fake.url, transport="sse")
        fake.stop()
    else:
        yield auto(mcp_log)


def test_a_result_of_more_than_16_mb_is_broken_off_as_it_arrives_not_held_whole(any_transport, caplog):
    import resource

    server = any_transport
    box = toolbox(server)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = box.call("c", "web__huge", '{"chars": 40000000}')
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.failed and result.seconds < 10  # over stdio the SDK's reader took 16 s for 20 MB
    assert grown_mb < 100  # held whole, 40 MB took 430 MB (a gigabyte, the worker's whole memory)
    if server.transport == "sse":  # the SDK's own reader of events stops at 1 MB an event, before ours
        assert "Server-sent event exceeded the 1048576 byte limit" in caplog.text
    else:
        assert "it sent a message of more than 16 MB" in result.content
        assert "MCP server web sent a message of more than 16 MB: it was broken off" in caplog.text
    assert box.call("c", "web__echo", '{"text": "still there"}').content == "still there"


def test_a_result_compressed_to_a_few_hundred_kilobytes_is_broken_off_as_it_arrives_not_held_whole(tmp_path, caplog):
    """A server may gzip its answer whether or not it was asked to: 64 MB of result came in 64 kB past the bound on
    a message's bytes, which counted them as they came, compressed, and the chat held it whole, unpacked."""
    import resource

    server = FakeMcpServer(tmp_path / "calls.log", gzip=True)
    try:
        box = toolbox(ToolServer("web", "auto", url=server.url))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = box.call("c", "web__huge", '{"chars": 64000000}')
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    finally:
        server.stop()
    assert result.failed and grown_mb < 100
    assert result.content.endswith("it sent a message compressed (gzip), which the chat does not take.")
    assert "MCP server web sent a message compressed as gzip: it was refused" in caplog.text
