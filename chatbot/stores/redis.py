"""The shared store for many workers and hosts: conversations and messages in Redis.

Keys (under a prefix): `conv:{id}` a hash of the conversation, `owner:{owner}` a sorted set of its
conversation ids by last activity, `order:{id}` the list of a conversation's message ids, `msgs:{id}`
a hash of its messages as JSON by id, `parts:{message id}` a sorted set of the parts of an answer being
written, by the character each begins at. A message is appended or rewritten alone, never the whole
history, and an answer grows by parts, so saving it costs the same however long it is. Every write
gives the conversation's keys the idle time to live again, so a conversation expires `idle_seconds`
after its last activity.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import redis

from chatbot.conversations import Conversation, Message, new_id

STOP_SECONDS = 3600  # a stop request outlives any answer
MAX_CONNECTIONS = 64  # per process; every call holds one only for its round trip


class RedisStore:
    """Conversations in Redis; every worker on every host sees the same ones."""

    def __init__(self, url: str, prefix: str = "chat:", idle_seconds: float = 30 * 86400) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=10,  # a burst waits for a free connection instead of failing
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        self.db = redis.Redis(connection_pool=pool)
        self.prefix = prefix
        self.idle_seconds = int(idle_seconds)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _keys(self, conversation_id: str) -> list[str]:
        return [self._key(kind, conversation_id) for kind in ("conv", "order", "msgs")]

    def _touch(self, pipe: redis.client.Pipeline, conversation_id: str, owner: str | None) -> None:
        """Start the idle time again for a conversation (and its owner's list)."""
        for key in self._keys(conversation_id):
            pipe.expire(key, self.idle_seconds)
        if owner:
            pipe.expire(self._key("owner", owner), self.idle_seconds)

    def ping(self) -> None:
        self.db.ping()

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        conversation = Conversation(id=new_id(), owner=owner, title=title)
        pipe = self.db.pipeline()
        self._save(pipe, conversation)
        pipe.zadd(self._key("owner", owner), {conversation.id: conversation.updated_at})
        self._touch(pipe, conversation.id, owner)
        pipe.execute()
        return conversation

    def _save(self, pipe: redis.client.Pipeline, conversation: Conversation) -> None:
        fields = asdict(conversation)
        fields["settings"] = json.dumps(fields["settings"])
        pipe.hset(self._key("conv", conversation.id), mapping=fields)

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        fields = self.db.hgetall(self._key("conv", conversation_id))
        if not fields or fields["owner"] != owner:
            return None
        return _conversation(fields)

    def list_conversations(self, owner: str) -> list[Conversation]:
        ids = self.db.zrevrange(self._key("owner", owner), 0, -1)
        pipe = self.db.pipeline()
        for conversation_id in ids:
            pipe.hgetall(self._key("conv", conversation_id))
        found = [_conversation(fields) for fields in pipe.execute() if fields]
        if len(found) < len(ids):  # some expired: drop them from the owner's list
            gone = set(ids) - {c.id for c in found}
            self.db.zrem(self._key("owner", owner), *gone)
        return found

    def search_conversations(self, owner: str, text: str) -> list[Conversation]:
        needle = text.lower()
        return [
            c
            for c in self.list_conversations(owner)
            if needle in c.title.lower() or any(needle in m.content.lower() for m in self.messages(c))
        ]

    def update_conversation(self, conversation: Conversation) -> None:
        pipe = self.db.pipeline()
        self._save(pipe, conversation)
        self._touch(pipe, conversation.id, conversation.owner)
        pipe.execute()

    def delete_conversation(self, conversation: Conversation) -> None:
        pipe = self.db.pipeline()
        pipe.delete(*self._keys(conversation.id))
        pipe.zrem(self._key("owner", conversation.owner), conversation.id)
        pipe.execute()

    def add_message(self, message: Message) -> Message:
        now = time.time()
        conversation_id = message.conversation_id
        owner = self.db.hget(self._key("conv", conversation_id), "owner")
        pipe = self.db.pipeline()
        pipe.hset(self._key("msgs", conversation_id), message.id, json.dumps(asdict(message)))
        pipe.rpush(self._key("order", conversation_id), message.id)
        pipe.hset(self._key("conv", conversation_id), "updated_at", now)
        if owner:
            pipe.zadd(self._key("owner", owner), {conversation_id: now})
        self._touch(pipe, conversation_id, owner)
        pipe.execute()
        return message

    def update_message(self, message: Message) -> None:
        pipe = self.db.pipeline()  # MULTI: a reader sees the parts or the whole content, never neither
        pipe.hset(self._key("msgs", message.conversation_id), message.id, json.dumps(asdict(message)))
        pipe.delete(self._key("parts", message.id))
        pipe.execute()

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        pipe = self.db.pipeline()
        pipe.zadd(self._key("parts", message.id), {f"{start}:{text}": start})
        pipe.expire(self._key("parts", message.id), self.idle_seconds)
        pipe.hset(self._key("msgs", message.conversation_id), message.id, json.dumps(asdict(message)))
        pipe.exists(self._key("stop", message.id))
        return bool(pipe.execute()[-1])

    def delete_messages_from(self, conversation: Conversation, message_id: str) -> None:
        ids = self.db.lrange(self._key("order", conversation.id), 0, -1)
        if message_id not in ids:
            return
        keep = ids.index(message_id)
        pipe = self.db.pipeline()
        if keep:
            pipe.ltrim(self._key("order", conversation.id), 0, keep - 1)
        else:
            pipe.delete(self._key("order", conversation.id))
        pipe.hdel(self._key("msgs", conversation.id), *ids[keep:])
        pipe.execute()

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        pipe = self.db.pipeline()  # MULTI: the message and its parts as of one moment
        pipe.hget(self._key("msgs", conversation.id), message_id)
        parts_key = self._key("parts", message_id)
        pipe.zrevrangebyscore(parts_key, start, "-inf", start=0, num=1)  # the part `start` falls in
        pipe.zrangebyscore(parts_key, f"({start}", "+inf")
        raw, before, after = pipe.execute()
        if raw is None:
            return None
        message = Message(**json.loads(raw))
        parts = [member.split(":", 1) for member in before + after] if message.status == "streaming" else []
        begin = max(start, len(message.content))
        text = "".join(part for _, part in parts)[max(0, begin - int(parts[0][0])) :] if parts else ""
        message.content = message.content[start:] + text
        return message

    def request_stop(self, message_id: str) -> None:
        self.db.set(self._key("stop", message_id), 1, ex=STOP_SECONDS)

    def stop_requested(self, message_id: str) -> bool:
        return bool(self.db.exists(self._key("stop", message_id)))

    def messages(self, conversation: Conversation) -> list[Message]:
        ids = self.db.lrange(self._key("order", conversation.id), 0, -1)
        if not ids:
            return []
        raws = self.db.hmget(self._key("msgs", conversation.id), ids)
        found = [Message(**json.loads(raw)) for raw in raws if raw]
        return [self.read_message(conversation, m.id) or m if m.status == "streaming" else m for m in found]

    def forget_idle(self) -> None:
        """Nothing to do: Redis expires idle conversations by itself."""


def _conversation(fields: dict[str, str]) -> Conversation:
    return Conversation(
        id=fields["id"],
        owner=fields["owner"],
        title=fields["title"],
        created_at=float(fields["created_at"]),
        updated_at=float(fields["updated_at"]),
        settings=json.loads(fields.get("settings") or "{}"),
    )
