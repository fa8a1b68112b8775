"""Against the real llama.cpp server (llama-cpp-python) with Gemma 3 270M from PyPI."""

from chatbot.conversations import Message, new_id
from chatbot.generation import ReplySettings, run_reply
from chatbot.local_model import CONTEXT_TOKENS
from chatbot.services.inference import Backend, Parameters, build_request, stream_reply
from chatbot.stores.sqlite import SQLiteStore
from tests.servers import FINISHED, ChatClient
from tests.test_socket import streamed_text

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_inference_layer_streams_from_the_local_server(local_model):
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id)
    tokens = list(stream_reply(build_request(backend, Parameters(max_new_tokens=30), QUESTION), backend))
    assert len(tokens) > 3
    assert "".join(tokens).strip()


def test_completions_with_the_apps_own_gemma_format(local_model):
    backend = Backend(api="completions", url=local_model.url, model_id=local_model.model_id)
    request = build_request(backend, Parameters(max_new_tokens=30), QUESTION)
    assert (
        request.payload["prompt"] == "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    tokens = list(stream_reply(request, backend))
    assert len(tokens) > 3
    assert "".join(tokens).strip()


def test_a_message_through_the_app_gets_a_streamed_answer(gunicorn_on_local_model, local_model):
    chat = ChatClient(gunicorn_on_local_model.url)
    frames = chat.exchange("What is the capital of France?")
    assert FINISHED.search(frames[-1]).group(2) == "done"
    streamed = streamed_text(frames)
    assert streamed.strip(), "the model's answer streamed no text"
    assert len(frames) > 3  # started, at least two deltas, finished: it streamed
    page = chat.page()
    assert "What is the capital of France?" in page
    assert 'class="message assistant done"' in page


def test_a_long_history_is_trimmed_to_the_context_window(tmp_path, local_model):
    """About 9,000 tokens of history against an 8,192-token window: the oldest turns go, the answer comes."""
    store = SQLiteStore(str(tmp_path / "chat.sqlite3"))
    conversation = store.create_conversation("alice")
    for _ in range(3):
        store.add_message(Message(new_id(), conversation.id, "user", "word " * 3000))
        store.add_message(Message(new_id(), conversation.id, "assistant", "Noted."))
    backend = Backend(api="chat", url=local_model.url, model_id=local_model.model_id, context_length=CONTEXT_TOKENS)
    settings = ReplySettings(backend=backend, parameters=Parameters(max_new_tokens=20))
    answer = run_reply(store, conversation, "What is 2+2?", settings, lambda event: None)
    assert answer.status == "done", answer.error
    assert answer.content.strip()
