"""The MCP client against a real MCP server built with the SDK (tests/fakes/mcp_server.py), over streamable HTTP
on 127.0.0.1 and over stdio: listing, calls, deadlines, Stop, failures in words, and both kinds of worker."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import subprocess
import sys
import threading
import time

import pytest

from chatbot.local_model.server import free_port
from chatbot.services import mcp_client, redaction
from chatbot.services.mcp_client import ToolCallStopped, ToolServerError
from chatbot.services.tool_servers import ToolServer
from tests.fakes.mcp_server import FakeMcpServer, stdio_server
from tests.servers import ROOT


@pytest.fixture(autouse=True)
def fresh_sessions():
    yield
    mcp_client.forget_connections()


def http_server(fake: FakeMcpServer, name: str = "fake", **headers: str) -> ToolServer:
    return ToolServer(name, "auto", url=fake.url, headers=headers)


@pytest.fixture(params=["streamable HTTP", "stdio"])
def server(request, mcp_log, tmp_path):
    """The same fake over each transport, and the log of what it was asked."""
    if request.param == "stdio":
        log = tmp_path / "stdio.log"
        return stdio_server("fake", log), lambda: log.read_text().splitlines() if log.exists() else []
    return http_server(mcp_log), mcp_log.logged


def test_the_tools_are_listed_with_their_json_schemas(server):
    tools = {tool.name: tool for tool in mcp_client.list_tools(server[0], 10)}
    assert set(tools) == {"echo", "fail", "hang", "image", "disguised", "album", "huge", "lookup", "environment"}
    echo = tools["echo"].input_schema
    assert echo["required"] == ["text"] and echo["properties"]["times"]["type"] == "integer"
    assert tools["echo"].description == "Say `text` back, `times` times."


def test_a_call_returns_the_tools_text(server):
    output = mcp_client.call_tool(server[0], "echo", {"text": "hi", "times": 2}, 10, None)
    assert (output.text, output.failed) == ("hi hi", False)
    assert server[1]() == ["echo hi"]


def test_the_session_stays_open_between_calls(server):
    mcp_client.call_tool(server[0], "echo", {"text": "warm"}, 10, None)
    started = time.monotonic()
    for _ in range(5):
        mcp_client.call_tool(server[0], "echo", {"text": "again"}, 10, None)
    assert (time.monotonic() - started) / 5 < 0.1  # a stdio server started anew would take a second each


def test_a_tool_that_fails_says_so(server):
    output = mcp_client.call_tool(server[0], "fail", {"reason": "the disk is full"}, 10, None)
    assert output.failed and "the disk is full" in output.text


def test_an_image_comes_back_as_bytes_with_a_word_for_the_text(server):
    output = mcp_client.call_tool(server[0], "image", {}, 10, None)
    ((kind, data),) = output.images
    assert (kind, data[:8], output.text) == ("image/png", b"\x89PNG\r\n\x1a\n", "[image: image/png]")


def test_a_call_past_its_deadline_is_cancelled_on_the_server(server):
    mcp_client.list_tools(server[0], 10)  # the session open: the deadline counts from the call
    started = time.monotonic()
    with pytest.raises(ToolServerError) as error:
        mcp_client.call_tool(server[0], "hang", {}, 0.5, None)
    assert time.monotonic() - started < 2
    assert str(error.value) == "The MCP server fake did not run hang within 0.5 s (TOOL_TIMEOUT_S)."
    wait_for(lambda: server[1]() == ["started", "cancelled"])
    assert mcp_client.call_tool(server[0], "echo", {"text": "still here"}, 10, None).text == "still here"


def test_stop_cancels_the_call_in_flight_on_the_server(server):
    mcp_client.list_tools(server[0], 10)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ToolCallStopped):
        mcp_client.call_tool(server[0], "hang", {}, 60, cancel)
    assert time.monotonic() - started < 1.0
    wait_for(lambda: server[1]() == ["started", "cancelled"])


def test_a_server_that_is_down_is_said_in_words():
    down = ToolServer("search", "auto", url=f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(ToolServerError) as error:
        mcp_client.list_tools(down, 5)
    assert str(error.value) == "The MCP server search could not be reached: connection refused."


def test_a_command_that_does_not_exist_is_said_in_words():
    missing = ToolServer("files", "auto", command="/no/such/mcp-server", transport="stdio")
    with pytest.raises(ToolServerError) as error:
        mcp_client.list_tools(missing, 5)
    assert str(error.value) == "The MCP server files could not be reached: no such file or directory."


def test_the_configured_headers_are_sent(tmp_path):
    fake = FakeMcpServer(tmp_path / "log", header="X-Key: sesame")
    try:
        assert mcp_client.call_tool(http_server(fake, **{"X-Key": "sesame"}), "echo", {"text": "in"}, 10, None).text
        with pytest.raises(ToolServerError) as error:
            mcp_client.list_tools(http_server(fake, "nokey"), 10)
        assert str(error.value) == (
            "The MCP server nokey could not be reached: it answered 401: check this server's headers in "
            "MCP_SERVERS or MCP_CONFIG."
        )
    finally:
        fake.stop()


def test_a_stdio_server_has_its_own_environment_and_not_the_chats_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_API_TOKEN", "hf_secret_of_the_chat")
    server = stdio_server("files", tmp_path / "log", ROOT_DIR="/srv/files")
    assert mcp_client.call_tool(server, "environment", {"name": "ROOT_DIR"}, 10, None).text == "/srv/files"
    assert mcp_client.call_tool(server, "environment", {"name": "HF_API_TOKEN"}, 10, None).text == "unset"


def test_a_stdio_server_runs_in_a_folder_of_its_own_and_cannot_read_the_chats_env(tmp_path, monkeypatch):
    chat, shared = tmp_path / "chat", tmp_path / "shared"
    chat.mkdir()
    shared.mkdir()
    (chat / ".env").write_text("HF_API_TOKEN=hf_secret_of_the_chat\n")
    (shared / "notes.txt").write_text("the configured folder")
    monkeypatch.chdir(chat)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    server = stdio_server("files", tmp_path / "log", MCP_FAKE_FILES="1")
    output = mcp_client.call_tool(server, "read", {"path": ".env"}, 10, None)
    assert output.failed and "hf_secret" not in output.text  # the file is not there: "Error executing tool read"
    assert (tmp_path / "cache/chatbot/mcp-servers/files").is_dir()
    given = dataclasses.replace(server, name="notes", cwd=str(shared))  # its entry's "cwd"
    assert mcp_client.call_tool(given, "read", {"path": "notes.txt"}, 10, None).text == "the configured folder"


def test_a_stdio_servers_stderr_is_logged_with_its_secrets_hidden_and_bounded(tmp_path, caplog):
    server = stdio_server("noisy", tmp_path / "log", MCP_FAKE_STDERR="1", API_KEY="sk-server-secret")
    said = "failed with key sk-server-secret \u202e" + "x" * 1000
    assert mcp_client.call_tool(server, "complain", {"text": said, "times": 200}, 10, None).text == "complained"
    wait_for(lambda: "MCP server noisy says" in caplog.text)
    time.sleep(0.5)  # the rest of its lines
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MCP server noisy says")]
    assert "sk-server-secret" not in caplog.text and redaction.HIDDEN in lines[0] and "\\u202e" in lines[0]
    assert max(len(line) for line in lines) < 600  # each line cut at 500 characters
    assert 10 < len(lines) < 100  # 20,000 characters a minute logged of its 200,000; the rest counted
    assert sum(len(line) for line in lines) < 25_000


def run_apart(function, *args):
    """anyio.run in a thread of its own: the browser tests' playwright keeps its asyncio loop in the main thread."""
    import anyio

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, function, *args).result()


def test_a_secret_a_stdio_server_writes_to_stderr_in_pieces_is_hidden_too(caplog):
    import anyio

    from chatbot.services.mcp_stdio import relay_stderr

    server = ToolServer("noisy", "auto", command="x", env={"API_KEY": "sk-server-secret"}, transport="stdio")

    async def relay(pieces: list[bytes]) -> None:
        sender, receiver = anyio.create_memory_object_stream[bytes](len(pieces))
        for piece in pieces:
            sender.send_nowait(piece)
        sender.close()
        with receiver:
            await relay_stderr(receiver, server)  # type: ignore[arg-type]

    run_apart(relay, [b"starting with sk-ser", b"ver-secret\nready\n"])
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"MCP server noisy says: starting with {redaction.HIDDEN}", "MCP server noisy says: ready"]


def test_calls_from_many_threads_at_once_share_the_session(mcp_log):
    server, results = http_server(mcp_log), []

    def call(number: int) -> None:
        results.append(mcp_client.call_tool(server, "echo", {"text": str(number)}, 10, None).text)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=int) == [str(n) for n in range(20)]


GEVENT_WORKER = """
from gevent import monkey; monkey.patch_all()
import sys, time, threading, gevent
from chatbot.services import mcp_client, redaction
from chatbot.services.tool_servers import ToolServer
from tests.fakes.mcp_server import stdio_server
servers = [ToolServer("web", "auto", url=sys.argv[1]), stdio_server("local", __import__("pathlib").Path(sys.argv[2]))]
ticks = []
def tick():
    while True:
        ticks.append(time.monotonic()); gevent.sleep(0.01)
ticker = gevent.spawn(tick)
echo = mcp_client.call_tool
calls = [gevent.spawn(echo, s, "echo", {"text": f"{s.name}{n}"}, 10, None) for s in servers for n in range(5)]
cancel = threading.Event()
def hang():
    try:
        mcp_client.call_tool(servers[0], "hang", {}, 60, cancel)
    except mcp_client.ToolCallStopped:
        return "stopped"
hung = gevent.spawn(hang)
gevent.spawn_later(0.5, cancel.set)
gevent.joinall([*calls, hung], timeout=20)
ticker.kill()
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
print(sorted(c.value.text for c in calls), hung.value, round(max(gaps), 3))
"""


def test_under_a_gevent_worker_calls_wait_cooperatively(mcp_log, tmp_path):
    """The gevent worker's monkey-patching: calls from greenlets over both transports, Stop, and the other
    greenlets keep running meanwhile (a loop that blocked the worker would stop the ticker)."""
    args = [sys.executable, "-c", GEVENT_WORKER, mcp_log.url, str(tmp_path / "log")]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    texts, stopped, longest_gap = result.stdout.rsplit(" ", 2) if result.stdout else ("", "", "9")
    expected = sorted([f"local{n}" for n in range(5)] + [f"web{n}" for n in range(5)])
    assert texts == str(expected), result.stderr
    assert stopped == "stopped"
    assert float(longest_gap) < 0.5  # a stdio server starting takes about a second: the worker ran on meanwhile


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "it did not happen"
        time.sleep(0.02)


def test_a_stdio_servers_lines_are_joined_across_pieces_and_a_long_one_is_broken_off():
    import anyio

    from chatbot.services.mcp_stdio import LineTooLong, lines

    async def read(pieces: list[bytes], limit: int) -> list[bytes]:
        sender, receiver = anyio.create_memory_object_stream[bytes](len(pieces))
        for piece in pieces:
            sender.send_nowait(piece)
        sender.close()
        with receiver:
            return [line async for line in lines(receiver, limit)]  # type: ignore[arg-type]

    assert run_apart(read, [b'{"a"', b": 1}\n{", b'"b": 2}\n\n', b"[]\n"], 100) == [
        b'{"a": 1}',
        b'{"b": 2}',
        b"",
        b"[]",
    ]
    with pytest.raises(LineTooLong):
        run_apart(read, [b"x" * 60, b"x" * 60, b"\n"], 100)
    with pytest.raises(LineTooLong):
        run_apart(read, [b"ok\n" + b"x" * 101], 100)
