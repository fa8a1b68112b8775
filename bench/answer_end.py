"""What a tab is sent when an answer ends: the bytes of the last fragment, against those of all the answer's text.

Run: .venv/bin/python bench/answer_end.py [--tokens 4000] [--per-flush 3]
Mixed markdown (tests/samples.py: headings, paragraphs, lists, tables, fenced code) goes through the socket's
TabView as the answer writer tells it, `--per-flush` tokens a flush, on the in-memory store and a socket that keeps
what it is sent; then the answer ends as the writer ends it (its HTML rendered whole). No server and no model: the
numbers are the fragments' sizes, the same on every machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat import tool_call_places  # noqa: E402
from chatbot.chat.events import Event, Kind  # noqa: E402
from chatbot.stores.conversations import Message, new_id  # noqa: E402
from chatbot.web.app import create_app  # noqa: E402
from chatbot.web.socket.fragments import Fragments  # noqa: E402
from chatbot.web.socket.view import TabView  # noqa: E402
from tests.samples import mixed  # noqa: E402


class Kept:
    """A socket that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, data: str) -> None:
        self.sent.append(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--per-flush", type=int, default=3)
    options = parser.parse_args()
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "CHAT_STORE_URL": "memory://"})
    store = app.extensions["chat_store"]
    with app.test_request_context():
        conversation = store.create_conversation("bench")
        question = store.add_message(Message(new_id(), conversation.id, "user", "Write a lot"))
        answer = store.add_message(
            Message(new_id(), conversation.id, "assistant", "", status="streaming", parent_id=question.id)
        )
        socket = Kept()
        view = TabView(socket, Fragments(app), conversation, lambda: "")
        view.on_event(Event(Kind.STARTED, answer, user_message=question))
        pieces = mixed(options.tokens)
        for start in range(0, len(pieces), options.per_flush):
            view.on_event(Event(Kind.DELTA, answer, "".join(pieces[start : start + options.per_flush])))
        answer.content, answer.status = "".join(pieces).strip(), "done"
        answer.html = tool_call_places.rendered(answer.content, [])
        answer.meta.update(tokens=options.tokens, seconds=40.0, tokens_per_second=100.0)
        streamed = len(socket.sent)
        view.on_event(Event(Kind.FINISHED, answer))
    text = sum(len(fragment.encode()) for fragment in socket.sent[1:streamed])
    (last,) = socket.sent[streamed:]
    print(f"{options.tokens:,} tokens of mixed markdown, {options.per_flush} a flush")
    print(f"the answer's HTML      : {len(answer.html.encode()):8,} bytes")
    print(f"its text as it streamed: {text:8,} bytes in {streamed - 1:,} fragments")
    print(f"the fragment that ends : {len(last.encode()):8,} bytes")


if __name__ == "__main__":
    main()
