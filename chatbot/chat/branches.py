"""A conversation's messages as a tree. Regenerate and Edit add an alternative beside a message instead of
throwing it away; the page, the socket and the model see one branch, the path from a first message to a leaf."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.stores.conversations import Message


@dataclass(frozen=True)
class Alternatives:
    """A message among those that answer or follow the same message: "‹ 2 / 3 ›"."""

    ids: tuple[str, ...]
    index: int

    @property
    def previous(self) -> str | None:
        return self.ids[self.index - 1] if self.index > 0 else None

    @property
    def next(self) -> str | None:
        return self.ids[self.index + 1] if self.index + 1 < len(self.ids) else None


class Tree:
    """Every message of a conversation (in the order they were saved), by id and by the message they follow."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.by_id = {message.id: message for message in messages}
        self.children: dict[str | None, list[Message]] = {}
        for message in messages:
            parent = message.parent_id if message.parent_id in self.by_id else None
            self.children.setdefault(parent, []).append(message)

    def path_to(self, message_id: str) -> list[Message]:
        """The branch from a first message down to `message_id` (empty when it is not in the conversation)."""
        path: list[Message] = []
        message = self.by_id.get(message_id)
        while message is not None and len(path) < len(self.messages):  # a loop in a bad file ends too
            path.append(message)
            message = self.by_id.get(message.parent_id or "")
        return path[::-1]

    def chosen(self, leaf_id: str) -> list[Message]:
        """The branch the conversation shows: the one ending at `leaf_id`, else at the newest message."""
        if leaf_id not in self.by_id:
            leaf_id = self.messages[-1].id if self.messages else ""
        return self.path_to(leaf_id)

    def shows(self, leaf_id: str, message_id: str) -> bool:
        """Whether the branch chosen by `leaf_id` (as in `chosen`) holds message `message_id`."""
        return any(message.id == message_id for message in self.chosen(leaf_id))

    def newest_leaf(self, message_id: str) -> str:
        """The end of the branch through `message_id` that goes on with the newest message at every step."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1].id
        return message_id

    def alternatives(self, message: Message) -> Alternatives:
        siblings = self.children.get(message.parent_id if message.parent_id in self.by_id else None, [message])
        ids = tuple(sibling.id for sibling in siblings)
        return Alternatives(ids, ids.index(message.id) if message.id in ids else 0)
