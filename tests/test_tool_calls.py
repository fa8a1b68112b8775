"""Answers that call tools: the fake router calls them, the real fake MCP server runs them, the model is told the
results and answers; rounds are bounded, Stop cancels the call in flight, a server that refuses tools gets an
answer without them, and each call is kept with the answer and shown folded, as text."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time

import pytest

from chatbot.chat import answer_writer, limits, tool_calls
from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.services import inference, mcp_client
from chatbot.services.errors import hint_for
from chatbot.services.inference import Backend, Parameters
from chatbot.services.protocols import CALLS_HEARD
from chatbot.services.tool_servers import ToolServer
from chatbot.stores.sqlite import SQLiteStore
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.fakes.mcp_server import stdio_server
from tests.helpers import Recorder, csrf, new_store, open_chat
from tests.servers import FINISHED, ChatClient, GunicornApp, finished_answer


@pytest.fixture(autouse=True)
def fresh_sessions():
    yield
    mcp_client.forget_connections()


def settings(fake, mcp, **fields) -> ReplySettings:
    backend = Backend(api="chat", url=fake.url + "/v1", model_id="meta-llama/Llama-3.1-8B-Instruct", token=TOKEN)
    servers = (ToolServer("web", "auto", url=mcp.url),)
    return ReplySettings(backend=backend, tool_servers=servers, **{"parameters": Parameters(), **fields})


def answer(fake, mcp, text="Say hi twice with the tool", cancel=None, **fields):
    store, conversation = new_store()
    recorder = Recorder()
    message = run_reply(store, conversation, text, settings(fake, mcp, **fields), recorder, cancel)
    return message, recorder


ECHO = ("call_1", "web__echo", '{"text": "hi", "times": 2}')


def test_the_model_calls_a_tool_and_answers_with_its_result(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[ECHO])
    fake.reply(tokens=["The tool", " said hi hi."])
    message, recorder = answer(fake, mcp_log)
    assert (message.status, message.content) == ("done", "The tool said hi hi.")
    (record,) = message.meta["tool_calls"]
    assert {k: record[k] for k in ("id", "name", "arguments", "result", "status")} == {
        "id": "call_1",
        "name": "web__echo",
        "arguments": '{"text": "hi", "times": 2}',
        "result": "hi hi",
        "status": "done",
    }
    first, second = (request.json for request in fake.requests)
    assert "web__echo" in [tool["function"]["name"] for tool in first["tools"]]
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": None, "tool_calls": [tool_calls.ToolCall(*ECHO).as_message_part()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "hi hi"},
    ]
    assert all("hi hi" not in m["content"] for m in second["messages"] if m["role"] == "system")
    assert "Running web__echo… 0 s" in [text for _, kind, text in recorder.events if kind == "waiting"]
    assert mcp_log.logged() == ["echo hi"]


def test_two_calls_in_one_turn_each_get_their_result_in_order(fake, mcp_log):
    fake.reply(tokens=["Checking."], tool_calls=[ECHO, ("call_2", "web__fail", '{"reason": "no network"}')])
    fake.reply(tokens=["One worked."])
    message, _ = answer(fake, mcp_log)
    assert message.content == "Checking.\n\nOne worked."
    assert [r["status"] for r in message.meta["tool_calls"]] == ["done", "failed"]
    messages = fake.requests[-1].json["messages"]
    assert messages[-3]["content"] == "Checking."
    assert [m["tool_call_id"] for m in messages[-2:]] == ["call_1", "call_2"]
    assert "no network" in messages[-1]["content"]


def test_bad_arguments_go_back_to_the_model_in_words_and_it_may_try_again(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"txt": "hi"}')])
    fake.reply(tokens=[], tool_calls=[("call_2", "web__echo", '{"text": "hi"}')])
    fake.reply(tokens=["Done."])
    message, _ = answer(fake, mcp_log)
    first, second = message.meta["tool_calls"]
    assert first["status"] == "failed" and first["result"].startswith("The arguments do not fit the tool: ")
    assert (second["status"], second["result"], message.content) == ("done", "hi", "Done.")


def test_after_tool_rounds_the_model_is_asked_to_answer_without_tools(fake, mcp_log):
    for number in range(3):
        fake.reply(tokens=[], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    fake.reply(tokens=["Enough."])
    message, _ = answer(fake, mcp_log, tool_rounds=2)
    assert ["tools" in request.json for request in fake.requests] == [True, True, False]
    assert [r["status"] for r in message.meta["tool_calls"]] == ["done", "done", "not run"]
    assert mcp_log.logged() == ["echo again", "echo again"]


def test_stop_cancels_the_call_in_flight_and_nothing_is_called_after_it(fake, mcp_log):
    fake.reply(tokens=[], tool_calls=[("call_1", "web__hang", "{}"), ECHO])
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    message, _ = answer(fake, mcp_log, cancel=cancel)
    assert message.status == "stopped"
    hung, echo = message.meta["tool_calls"]
    assert hung["status"] == "not run" and hung["result"].startswith("Stopped: the user pressed Stop while it ran")
    assert echo["status"] == "not run" and len(fake.requests) == 1
    wait_for(lambda: mcp_log.logged() == ["started", "cancelled"])


def test_a_server_that_refuses_tools_gets_the_answer_without_them_and_the_chat_says_why(fake, mcp_log):
    fake.refuses_tools = True
    message, _ = answer(fake, mcp_log)
    assert (message.status, message.content) == ("done", "Hello there!")
    assert "does not take tools" in message.meta["tools_refused"]
    assert "tools param requires --jinja flag" in message.meta["tools_refused"]
    assert ["tools" in request.json for request in fake.requests] == [True, False]
    answer(fake, mcp_log)  # remembered: not offered again
    assert "tools" not in fake.requests[-1].json and len(fake.requests) == 3


def test_the_summary_of_a_call_is_short_and_its_arguments_pretty():
    record = {"name": "web__search", "arguments": json.dumps({"query": "x" * 100, "n": 2})}
    assert tool_calls.summary(record) == 'web__search(query: "' + "x" * 71 + "…)"
    assert tool_calls.pretty('{"a":1}') == '{\n  "a": 1\n}' and tool_calls.pretty("{oops") == "{oops"


def test_a_reloaded_page_shows_each_call_folded_with_its_result_escaped_never_as_html(make_app, fake, mcp_log):
    servers = json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}])
    app = make_app(
        AUTH="none", API_URL=fake.url + "/v1", MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", MCP_SERVERS=servers
    )
    client = app.test_client()
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", '{"text": "<img src=x onerror=alert(1)>"}')])
    fake.reply(tokens=["Shown."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo an image tag"})
    page = client.get(chat).text
    assert '<details class="tool-call done" id="call-' in page
    assert "Called web__echo(text: &#34;&lt;img src=x onerror=alert(1)&gt;&#34;) · " in page
    assert "&lt;img src=x onerror=alert(1)&gt;</pre>" in page and "<img src=x" not in page


def test_a_call_whose_arguments_and_result_reverse_text_shows_each_bidi_override_as_its_escape(make_app, fake, mcp_log):
    """A right-to-left override from the model or a tool server would make the block read otherwise than it is
    (Trojan Source), as the approval card already guards against."""
    app = trusted_tools_app(make_app, fake, mcp_log)
    client = app.test_client()
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", json.dumps({"text": "safe\u202etxt.exe"}))])
    fake.reply(tokens=["Shown."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo"})
    block = re.search(r'<details class="tool-call done" id="call-.*?</details>', client.get(chat).text, re.S).group(0)
    assert "\u202e" not in block and block.count("safe\\u202etxt.exe") == 3  # summary, arguments, result


def trusted_tools_app(make_app, fake, mcp_log, **settings):
    """An app without accounts on the fake router's chat completions, the fake MCP server's tools run unasked."""
    return make_app(
        AUTH="none",
        API_URL=fake.url + "/v1",
        MODEL_ID="meta-llama/Llama-3.1-8B-Instruct",
        MCP_SERVERS=json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}]),
        **settings,
    )


def test_an_answer_out_of_tool_time_has_its_running_call_cut_and_its_next_not_run_and_the_page_says_so(
    make_app, fake, mcp_log
):
    """TOOL_TIME_BUDGET_S counts the time all of an answer's calls run: the call running as it ends is cancelled on
    its server (sooner than its own TOOL_TIMEOUT_S), the calls after it are not made, and the model, told why,
    answers without tools."""
    app = trusted_tools_app(make_app, fake, mcp_log, TOOL_TIMEOUT_S=5.0, TOOL_TIME_BUDGET_S=2.0)
    client = app.test_client()
    calls = [("call_1", "web__hang", '{"seconds": 0.5}'), ("call_2", "web__hang", "{}"), ECHO]
    fake.reply(tokens=["Trying."], tool_calls=calls)
    fake.reply(tokens=["Out of time."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Sleep, then echo"})
    page = client.get(chat).text
    cut = "Cut: the answer had used its 2 s of tool time while it ran, and it was cancelled."
    not_run = "Not run: the answer had used its 2 s of tool time."
    assert cut in page and not_run in page and "Out of time." in page
    tool_turns = [m["content"] for m in fake.requests[-1].json["messages"] if m["role"] == "tool"]
    assert tool_turns == ["woke up", cut, not_run] and "tools" not in fake.requests[-1].json
    wait_for(lambda: mcp_log.logged() == ["started", "started", "cancelled"])


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "it did not happen"
        time.sleep(0.02)


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_under_gunicorn_a_chat_calls_tools_over_http_and_stdio_with_either_worker(
    tmp_path, fake_hf, fake, mcp_log, worker_class
):
    """The app as deployed: MCP_SERVERS (streamable HTTP) and MCP_CONFIG (stdio), two calls in one turn, over the
    socket; the stdio server does not see the chat's token."""
    config = tmp_path / "mcp.json"
    local = stdio_server("local", tmp_path / "stdio.log")
    config.write_text(
        json.dumps({"mcpServers": {"local": {"command": local.command, "args": list(local.args), "trust": "auto"}}})
    )
    environment = app_environment(
        tmp_path,
        API_URL=fake_hf.url + "/v1",
        INFERENCE_API="chat",
        MODEL_ID="meta-llama/Llama-3.1-8B-Instruct",
        HF_API_TOKEN=TOKEN,
        READ_TIMEOUT="5",
        WORKER_CLASS=worker_class,
        MCP_SERVERS=json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}]),
        MCP_CONFIG=str(config),
    )
    calls = [ECHO, ("call_2", "local__environment", '{"name": "HF_API_TOKEN"}')]
    fake.reply(tokens=[], tool_calls=calls)
    fake.reply(tokens=["Both ran."])
    with GunicornApp(environment) as server:
        frames = ChatClient(server.url).exchange("Use both tools")
    finished = finished_answer(frames)
    assert FINISHED.search(finished).group(2) == "done" and "Both ran." in finished
    assert finished.count('<details class="tool-call done" id="call-') == 2
    assert "Called web__echo(text: &#34;hi&#34;, times: 2)" in finished
    tool_messages = [m for m in fake.requests[-1].json["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["hi hi", "unset"]


def test_a_long_call_keeps_the_answer_alive_and_stop_from_another_tab_cancels_it(fake, mcp_log, store, monkeypatch):
    """On SQLite: the answer is saved as it is while the tool runs (no tab or host takes it for abandoned), and
    Stop asked through the store, as another tab, worker or host does, cancels the call."""
    monkeypatch.setattr(answer_writer, "HEARTBEAT_SECONDS", 0.3)
    fake.reply(tokens=["Looking."], tool_calls=[("call_1", "web__hang", '{"seconds": 1.5}')])
    fake.reply(tokens=["Slept."])
    fake.reply(tokens=[], tool_calls=[("call_2", "web__hang", "{}")])
    conversation, ages = store.create_conversation("alice"), []

    def listen(event):
        if event.kind == "waiting" and event.text.startswith("Running"):
            stored = store.read_message(conversation, event.message.id)
            ages.append((time.time() - stored.meta["saved_at"], stored.content))

    message = run_reply(store, conversation, "Sleep", settings(fake, mcp_log), listen)
    assert (message.status, message.content, message.meta["tool_calls"][0]["result"]) == (
        "done",
        "Looking.\n\nSlept.",
        "woke up",
    )
    assert max(age for age, _ in ages[-3:]) < 0.6 and ages[-1][1] == "Looking."

    def stop_when_running(event):
        if event.kind == "waiting" and event.text.startswith("Running"):
            threading.Timer(0.3, store.request_stop, args=(event.message.id,)).start()

    stopped = run_reply(store, conversation, "Sleep again", settings(fake, mcp_log), stop_when_running)
    assert stopped.status == "stopped" and stopped.meta["tool_calls"][0]["status"] == "not run"
    assert len(fake.requests) == 3


def test_the_token_a_model_puts_into_a_call_is_hidden_before_the_call_is_made_kept_shown_or_exported(
    make_app, fake, mcp_log
):
    """The token cut across the pieces of a call's arguments, written with a JSON escape, or in a tool's name:
    the tool never receives it, and neither the page, the exports nor the model's next request hold it."""
    servers = json.dumps([{"name": "web", "url": mcp_log.url, "trust": "auto"}])
    app = make_app(
        AUTH="none", API_URL=fake.url + "/v1", MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", MCP_SERVERS=servers
    )
    client = app.test_client()
    escaped = "\\u0068" + TOKEN[1:]  # h written as \u0068: the same string once read as JSON
    calls = [
        ("call_1", "web__echo", json.dumps({"text": f"key {TOKEN}"})),
        ("call_2", "web__echo", '{"text": "' + escaped + '"}'),
        ("call_3", f"web__{TOKEN}", "{}"),
    ]
    fake.reply(tokens=[], tool_calls=calls, tool_piece=3)
    fake.reply(tokens=["Done."])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Leak the key"})
    assert mcp_log.logged() == ["echo key hf_***", "echo hf_***"]
    exported = client.get(f"{chat}/export.json").json
    first, second, third = exported["messages"][-1]["meta"]["tool_calls"]
    assert (first["arguments"], first["result"]) == ('{"text": "key hf_***"}', "key hf_***")
    assert (second["arguments"], third["name"]) == ('{"text": "hf_***"}', "web__hf_***")
    for shown in (client.get(chat).text, client.get(f"{chat}/export.json").text, client.get(f"{chat}/export.md").text):
        assert TOKEN not in shown and TOKEN[3:] not in shown
    assert TOKEN[3:] not in json.dumps(fake.requests[-1].json)


def test_calls_past_the_most_a_turn_may_make_are_not_run_and_the_model_is_told_why(fake, mcp_log):
    many = [(f"call_{n}", "web__echo", json.dumps({"text": str(n)})) for n in range(answer_writer.CALLS_PER_ROUND + 2)]
    fake.reply(tokens=[], tool_calls=many)
    fake.reply(tokens=["Eight ran."])
    message, _ = answer(fake, mcp_log)
    records = message.meta["tool_calls"]
    assert [r["status"] for r in records] == ["done"] * 8 + ["not run"] * 2
    assert mcp_log.logged() == [f"echo {n}" for n in range(8)]
    told = [m["content"] for m in fake.requests[-1].json["messages"] if m["role"] == "tool"]
    assert told[8:] == ["Not run: at most 8 tool calls per turn."] * 2 and told[:8] == [str(n) for n in range(8)]


def test_a_model_that_makes_hundreds_of_calls_in_one_turn_has_only_the_first_few_kept_and_answered(fake, mcp_log):
    flood = [(f"call_{n}", "web__echo", json.dumps({"text": str(n)})) for n in range(300)]
    fake.reply(tokens=[], tool_calls=flood, tool_piece=100)
    fake.reply(tokens=["Done."])
    message, _ = answer(fake, mcp_log)
    kept = CALLS_HEARD
    assert [r["id"] for r in message.meta["tool_calls"]] == [f"call_{n}" for n in range(kept)]
    assert mcp_log.logged() == [f"echo {n}" for n in range(answer_writer.CALLS_PER_ROUND)]
    asked = fake.requests[-1].json["messages"]
    assert len([m for m in asked if m["role"] == "tool"]) == kept == len(asked[-kept - 1]["tool_calls"])


def test_each_round_after_tool_calls_counts_in_the_tokens_of_the_day_and_the_answer_stops_at_them(fake, mcp_log):
    """A model that keeps calling tools: each round sets aside its max new tokens like the first request, the
    last is cut to what is left, and when nothing is left the answer ends in the limit's words with what it
    wrote; the day's count never passes the limit."""
    store, conversation = new_store()
    limited = dataclasses.replace(
        settings(fake, mcp_log), parameters=Parameters(max_new_tokens=100), tokens_per_day=350
    )
    for number in range(6):
        fake.reply(tokens=["Looking."], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    reserved = []  # the day's count while each round is written: every round's tokens set aside

    def listen(event):
        if event.kind == "delta":
            reserved.append(limits.usage_today(store, "alice")[1])

    message = run_reply(store, conversation, "Keep calling the tool", limited, listen)
    asked = [request.json["max_tokens"] for request in fake.requests]
    assert asked[:2] == [100, 100] and 0 < asked[2] < 100 and len(asked) == 3
    assert (message.status, message.error["kind"]) == ("error", "limit")
    assert message.error["message"].startswith("Your account has used its 350 tokens for today")
    assert message.content.startswith("Looking.") and len(message.meta["tool_calls"]) == 3
    rounds = sorted(set(reserved))  # each round's tokens set aside on top of the rounds' before it
    assert len(rounds) == 3 and rounds[0] > 100 and rounds[1] > rounds[0] + 100 and rounds[2] == 350
    assert limits.usage_today(store, "alice")[1] <= 350


def test_what_a_tool_returns_of_its_servers_secret_environment_is_hidden_from_the_model_and_the_page(
    fake, mcp_log, tmp_path
):
    store, conversation = new_store()
    server = stdio_server("local", tmp_path / "stdio.log", API_KEY="k3y-of-the-server", ROOT_DIR="/srv/files")
    with_stdio = dataclasses.replace(settings(fake, mcp_log), tool_servers=(server,))
    calls = [
        ("call_1", "local__environment", '{"name": "API_KEY"}'),
        ("call_2", "local__environment", '{"name": "ROOT_DIR"}'),
    ]
    fake.reply(tokens=[], tool_calls=calls)
    fake.reply(tokens=["Read."])
    message = run_reply(store, conversation, "Read the key", with_stdio, Recorder())
    assert [record["result"] for record in message.meta["tool_calls"]] == ["hf_***", "/srv/files"]
    assert "k3y-of-the-server" not in json.dumps(fake.requests[-1].json)


def test_stop_from_another_tab_between_two_calls_prevents_the_next_one(fake, mcp_log):
    """Stop asked through the store (another tab, worker or host) once the first call is done: the second is not
    made, and the model is not asked again."""
    store, conversation = new_store()
    calls = [("call_1", "web__echo", '{"text": "one"}'), ("call_2", "web__echo", '{"text": "two"}')]
    fake.reply(tokens=[], tool_calls=calls)

    def stop_when_the_first_call_is_done(event):
        if event.kind == "waiting" and event.text == "":
            store.request_stop(event.message.id)

    message = run_reply(store, conversation, "Echo twice", settings(fake, mcp_log), stop_when_the_first_call_is_done)
    assert message.status == "stopped"
    assert [record["status"] for record in message.meta["tool_calls"]] == ["done", "not run"]
    assert mcp_log.logged() == ["echo one"] and len(fake.requests) == 1


def test_each_round_after_tool_calls_counts_as_an_answer_of_the_minute_and_the_answer_ends_at_the_limit(fake, mcp_log):
    """A model that loops through tools asks its server no more often than the answers a minute allow: the
    message counted as it was sent (actions.send), each round after it counted too, the answer ended in the
    limit's words when it is reached, with what was written and called kept."""
    store, conversation = new_store()
    config = {"MESSAGES_PER_MINUTE": 3, "MESSAGES_PER_MINUTE_PER_ADDRESS": 0}
    asker = limits.asker(config, conversation.owner, "192.0.2.7")
    limited = dataclasses.replace(settings(fake, mcp_log), asker=asker)
    for number in range(6):
        fake.reply(tokens=["Looking."], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    assert limits.refusal(store, config, "answers", conversation.owner, "192.0.2.7") is None  # the message's own
    message = run_reply(store, conversation, "Keep calling the tool", limited, Recorder())
    assert len(fake.requests) == 3
    assert (message.status, message.error["kind"]) == ("error", "limit")
    assert message.error["message"].startswith("This browser has asked for 3 answers this minute")
    assert "press Regenerate then" in message.error["message"]
    assert message.content.startswith("Looking.") and len(message.meta["tool_calls"]) == 3
    assert limits.refusal(store, config, "answers", conversation.owner, "192.0.2.7") is not None


def test_the_rounds_of_tool_calls_count_against_the_limit_of_the_address_too(fake, mcp_log):
    store, conversation = new_store()
    config = {"MESSAGES_PER_MINUTE": 0, "MESSAGES_PER_MINUTE_PER_ADDRESS": 2}
    limited = dataclasses.replace(settings(fake, mcp_log), asker=limits.asker(config, "someone else", "192.0.2.8"))
    for number in range(4):
        fake.reply(tokens=[], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    assert limits.refusal(store, config, "answers", "someone else", "192.0.2.8") is None  # the message's own
    message = run_reply(store, conversation, "Keep calling the tool", limited, Recorder())
    assert len(fake.requests) == 2
    assert message.error["message"].startswith("Your network address has asked for 2 answers this minute")


@pytest.mark.parametrize(
    ("template_takes_tools", "marked", "offered"),
    [(True, None, True), (False, None, False), (False, True, True), (True, False, False)],
)
def test_a_llama_cpp_model_is_offered_tools_as_its_templates_capabilities_say_unless_models_says_otherwise(
    fake, mcp_log, template_takes_tools, marked, offered
):
    """llama.cpp's /props `chat_template_caps` say whether the model's template has a place for tools; `"tools"`
    in MODELS (`Backend.takes_tools`) says it first."""
    fake.props = {"chat_template_caps": {"supports_tools": template_takes_tools, "supports_tool_calls": True}}
    configured = settings(fake, mcp_log)
    configured = dataclasses.replace(configured, backend=dataclasses.replace(configured.backend, takes_tools=marked))
    store, conversation = new_store()
    message = run_reply(store, conversation, "Hi", configured, Recorder())
    assert message.status == "done"
    assert ("tools" in fake.requests[-1].json) is offered


def test_a_form_post_counts_each_round_of_its_answer_against_the_browsers_answers_a_minute(make_app, fake, mcp_log):
    app = trusted_tools_app(make_app, fake, mcp_log, MESSAGES_PER_MINUTE=2)
    client = app.test_client()
    for number in range(4):
        fake.reply(tokens=[], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Loop"})
    assert len(fake.requests) == 2
    page = client.get(chat).text
    assert "This browser has asked for 2 answers this minute, the most this chat allows." in page
    refused = client.post(f"{chat}/messages", data={"csrf_token": csrf(page), "message": "Again"})
    assert refused.status_code == 429 and len(fake.requests) == 2


def test_rounds_of_tool_calls_with_no_text_between_them_are_saved_in_a_sql_store(fake, mcp_log, tmp_path):
    """Each round saves what was written before its calls: with nothing new, nothing is saved twice at one place
    (SQLite and PostgreSQL keep one part per place, and refused the second)."""
    store = SQLiteStore(str(tmp_path / "chat.sqlite3"))
    conversation = store.create_conversation("alice")
    for number in range(2):
        fake.reply(tokens=[], tool_calls=[(f"call_{number}", "web__echo", '{"text": "again"}')])
    fake.reply(tokens=["Done."])
    message = run_reply(store, conversation, "Echo twice", settings(fake, mcp_log), Recorder())
    assert (message.status, message.content, message.error) == ("done", "Done.", None)
    assert store.read_message(conversation, message.id).content == "Done."


def test_a_call_with_a_huge_id_name_or_arguments_fails_in_words_to_the_model_and_the_chat_and_none_is_kept_whole(
    fake, mcp_log
):
    """A hostile model server's calls: an id of 100,000 characters is replaced by one of the chat's, a name of
    90,000 is cut (naming no tool), arguments of 100,000 are counted, not kept, and the call is not made; the model
    is told why as the call's result, the chat shows it, and the well-formed call beside them runs."""
    huge_arguments = json.dumps({"text": "x" * 100_000})
    calls = [("i" * 100_000, "web__echo", huge_arguments), ("call_2", "n" * 90_000, "{}"), ECHO]
    fake.reply(tokens=[], tool_calls=calls, tool_piece=50_000)
    fake.reply(tokens=["Told."])
    message, _ = answer(fake, mcp_log, parameters=Parameters(max_new_tokens=8000))
    long_arguments, long_name, echo = message.meta["tool_calls"]
    told = (
        f"The model's arguments for web__echo were {len(huge_arguments):,} characters, more than the 64,000 a call"
        " may have, so it was not made. Call it again with shorter arguments."
    )
    assert (long_arguments["id"], long_arguments["arguments"], long_arguments["status"]) == ("call_0", "{}", "failed")
    assert long_arguments["result"] == told
    assert long_name["name"] == "n" * 64 + "…" and long_name["status"] == "failed"
    assert long_name["result"].startswith("There is no tool named 'nnnn")
    assert (echo["status"], echo["result"], message.content) == ("done", "hi hi", "Told.")
    assert mcp_log.logged() == ["echo hi"] and len(json.dumps(message.meta)) < 5_000
    asked = fake.requests[-1].json["messages"]
    assert [call["id"] for call in asked[-4]["tool_calls"]] == ["call_0", "call_2", "call_1"]
    assert [m["content"] for m in asked[-3:]][0] == told and len(json.dumps(asked)) < 10_000


FLOODS = {  # what a hostile server streams on and on, whatever max_tokens says, and what the chat says it sent
    "text": ({"tokens": ["word " * 200] * 1000, "ignores_max_tokens": True}, "more than 256,000 characters"),
    "reasoning": ({"reasoning": ["hmm " * 250] * 1000, "tokens": ["Hi"]}, "more than 256,000 characters"),
    "tool call arguments": (
        {
            "tokens": [],
            "tool_calls": [("call_1", "web__echo", json.dumps({"text": "x" * 5_000_000}))],
            "tool_piece": 50_000,
        },
        "more than 256,000 characters",
    ),
}


@pytest.mark.parametrize("flood", FLOODS)
def test_a_server_streaming_far_more_than_max_new_tokens_allow_has_the_answer_ended_with_what_came_kept(
    fake, mcp_log, flood
):
    """An answer's stream may say at most what its max new tokens could (64 characters each), and at least
    256,000 characters: past it the chat stops reading, keeps and saves what came before (no call of that turn is
    made), and says what happened and what to do, to the admin and, in other words, to a user."""
    reply, sent = FLOODS[flood]
    fake.reply(**reply)
    store, conversation = new_store()
    started = time.monotonic()
    message = run_reply(store, conversation, "Go on and on", settings(fake, mcp_log), Recorder())
    seconds = time.monotonic() - started
    stored = store.messages(conversation)[-1]
    assert (stored.status, stored.error["kind"]) == ("error", "overlong")
    assert stored.error["message"] == (
        f"The server at {fake.url}/v1/chat/completions sent {sent} for this answer, far more than its max new"
        " tokens allow, so the chat stopped reading there; what came before is kept."
    )
    assert "API_URL" in hint_for(stored.error, runs_the_chat=True)
    assert hint_for(stored.error, runs_the_chat=False).endswith("pick another model, and tell the admin.")
    kept = len(json.dumps({"content": stored.content, "meta": stored.meta}))
    assert kept < 270_000 and "tool_calls" not in stored.meta and mcp_log.logged() == []
    if flood == "text":
        assert stored.content == message.content == ("word " * 51_200).strip()  # up to the bound, whole
    assert seconds < 10 and len(fake.requests) == 1


def test_a_server_streaming_events_with_nothing_in_them_without_end_is_cut_at_the_bodys_bound(
    fake, mcp_log, monkeypatch
):
    """Events that say nothing (empty deltas) never reach the bound on characters: the body itself may be 64 bytes
    a character of it (16,384,000 bytes at 250 max new tokens), here 1 byte so that the fake, which writes an event
    in 0.1 ms, is not waited for."""
    monkeypatch.setattr(inference, "BODY_BYTES_PER_CHAR", 1)
    fake.reply(tokens=[""] * 20_000, ignores_max_tokens=True)  # 3.2 MB
    store, conversation = new_store()
    run_reply(store, conversation, "Go on and on", settings(fake, mcp_log), Recorder())
    stored = store.messages(conversation)[-1]
    assert (stored.status, stored.error["kind"]) == ("error", "overlong")
    assert stored.error["message"].startswith(
        f"The server at {fake.url}/v1/chat/completions sent more than 256,000 bytes"
    )


def test_the_page_shows_a_call_with_arguments_too_long_as_failed_in_words_and_an_overlong_answer_kept_with_why(
    make_app, fake, mcp_log
):
    app = trusted_tools_app(make_app, fake, mcp_log)
    client = app.test_client()
    fake.reply(tokens=[], tool_calls=[("call_1", "web__echo", json.dumps({"text": "x" * 100_000}))], tool_piece=50_000)
    fake.reply(tokens=["word "] * 60_000, ignores_max_tokens=True)
    chat = open_chat(client)
    client.post(f"{chat}/messages", data={"csrf_token": csrf(client.get(chat).text), "message": "Echo a lot"})
    page = client.get(chat).text
    assert '<details class="tool-call failed" id="call-' in page and "x" * 1000 not in page
    assert (
        "The model&#39;s arguments for web__echo were 100,012 characters, more than the 64,000 a call may have" in page
    )
    assert "sent more than 256,000 characters for this answer" in page and "API_URL" in page
    assert page.count("word") > 50_000
