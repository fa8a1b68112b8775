"""The shared store for many workers and hosts: conversations and messages in Redis.

Keys (under a prefix): `conv:{id}` a hash of the conversation, `owner:{owner}` a sorted set of its
conversation ids by last activity, `order:{id}` the list of a conversation's message ids, `msgs:{id}`
a hash of its messages as JSON by id, `files:{id}` a hash of its attached files by id (JSON: the file's info
and its bytes in base64, as the client decodes answers to text), `sizes:{id}` their sizes in bytes by id (read
for what an owner keeps in all, without reading the files; a share snapshot's as `share:{key}`), `links:{id}`
a hash of its share links by token, `snapshots:{id}` a hash of the snapshots they show by key (one for all the
links that show it), `parts:{message id}` a sorted set of the parts
of an answer being written, by the character each begins at. A message is appended or rewritten alone, never the whole
history, and an answer grows by parts, so saving it costs the same however long it is. Every write
gives the conversation's keys the idle time to live again, so a conversation expires `idle_seconds`
after its last activity.

The client decodes every answer to str (decode_responses), which redis-py's types cannot tell from bytes: `cast`
says so where a reply is read.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import cast

import redis

from chatbot.stores.conversations import Conversation, Message, new_id
from chatbot.stores.failures import translating

APPEND_TO_ANSWER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('EXISTS', KEYS[4])
"""  # KEYS: conv, msgs, parts, stop; ARGV: message id, message, start, part, idle seconds. 1: stop
UPDATE_MESSAGE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return redis.call('DEL', KEYS[3])
"""  # KEYS: conv, msgs, parts; ARGV: message id, message. Never a message of a conversation gone
DELETE_IF_UNCHANGED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""  # KEYS: the kind's records; ARGV: key, the record as it was read (JSON). 1: deleted
STOP_SECONDS = 3600  # a stop request outlives any answer
MAX_CONNECTIONS = 64  # per process; every call holds one only for its round trip


def explain(store: RedisStore, error: BaseException) -> str:
    """What a failure of Redis means for the user, and what the server's owner can do."""
    where = f"Redis at {store.address}"
    words = str(error)
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return (
            f"The chat's store ({where}) does not answer, so nothing can be read or saved. Whoever runs the chat "
            "must check that Redis is running and that CHAT_STORE_URL points at it; then try again."
        )
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return (
            f"The chat's store ({where}) is full (its maxmemory is reached), so nothing can be saved. Whoever runs "
            "the chat must give Redis more memory or free some; then send again."
        )
    if words.startswith("MISCONF"):
        return (
            f"The chat's store ({where}) refuses to save: it cannot write its snapshot to its disk (MISCONF). "
            "Whoever runs the chat must free space on Redis's disk; then send again."
        )
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return f"The chat's store ({where}) is a read-only replica: CHAT_STORE_URL must point at the primary."
    return f"The chat's store ({where}) refused: {words}. Try again; if it keeps failing, the server log says why."


@translating((redis.RedisError,), explain)
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
        where = pool.connection_kwargs
        self.address = where.get("path") or f"{where.get('host')}:{where.get('port')}/{where.get('db', 0)}"
        self.prefix = prefix
        self.idle_seconds = int(idle_seconds)
        self._append_to_answer = self.db.register_script(APPEND_TO_ANSWER)
        self._update_message = self.db.register_script(UPDATE_MESSAGE)
        self._delete_if_unchanged = self.db.register_script(DELETE_IF_UNCHANGED)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _keys(self, conversation_id: str) -> list[str]:
        kinds = ("conv", "order", "msgs", "files", "sizes", "links", "snapshots")
        return [self._key(kind, conversation_id) for kind in kinds]

    def _conversation_ids(self, owner: str) -> list[str]:
        return cast(list[str], self.db.zrange(self._key("owner", owner), 0, -1))

    def _atomically(self, attempt: Callable[[redis.client.Pipeline], bool], *watched: str) -> bool:
        """Run `attempt` in a transaction that watches the keys `watched`, again if any changed meanwhile; what it
        returned the time it went through."""
        # redis-py's types want a callable that returns None, though value_from_callable returns what it returns
        return bool(self.db.transaction(attempt, *watched, value_from_callable=True))  # type: ignore[arg-type]

    def _touch(self, pipe: redis.client.Pipeline, conversation_id: str, owner: str | None) -> None:
        """Start the idle time again for a conversation (and its owner's list)."""
        for key in self._keys(conversation_id):
            pipe.expire(key, self.idle_seconds)
        if owner:
            pipe.expire(self._key("owner", owner), self.idle_seconds)

    def keeps_data(self) -> bool | None:
        """Whether Redis keeps its data on disk (an append-only file, or snapshots), so a restart loses none or
        little of it; None when it will not say (it refuses CONFIG, as managed Redis does)."""
        try:
            kept = {**self.db.config_get("appendonly"), **self.db.config_get("save")}
        except redis.ResponseError:
            return None
        return kept.get("appendonly") == "yes" or bool((kept.get("save") or "").strip())

    def ping(self) -> None:
        self.db.set(self._key("ping"), 1, ex=60)  # a write: a full Redis (maxmemory, MISCONF) answers PING

    def create_conversation(self, owner: str, title: str = "New chat") -> Conversation:
        conversation = Conversation(id=new_id(), owner=owner, title=title)
        pipe = self.db.pipeline()
        self._save(pipe, conversation)
        pipe.zadd(self._key("owner", owner), {conversation.id: conversation.updated_at})
        self._touch(pipe, conversation.id, owner)
        pipe.execute()
        return conversation

    def _save(self, pipe: redis.client.Pipeline, conversation: Conversation) -> None:
        """Save the conversation's fields but its leaf, which start_answer and choose_branch alone write: a rename
        never moves it."""
        fields = asdict(conversation) | {"settings": json.dumps(conversation.settings)}
        pipe.hset(self._key("conv", conversation.id), mapping={k: v for k, v in fields.items() if k != "leaf_id"})

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        fields = cast(dict[str, str], self.db.hgetall(self._key("conv", conversation_id)))
        if fields.get("owner") != owner:  # none, someone else's, or what a write raced with its deletion left
            return None
        return _conversation(fields)

    def list_conversations(self, owner: str) -> list[Conversation]:
        ids = cast(list[str], self.db.zrevrange(self._key("owner", owner), 0, -1))
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

    def replace_title(self, conversation: Conversation, expected: str, title: str) -> bool:
        head = self._key("conv", conversation.id)

        def attempt(pipe: redis.client.Pipeline) -> bool:  # run again if the conversation changed meanwhile
            if pipe.hget(head, "title") != expected:  # renamed, or gone (None)
                return False
            pipe.multi()
            pipe.hset(head, "title", title)
            self._touch(pipe, conversation.id, conversation.owner)
            return True

        return self._atomically(attempt, head)

    def delete_conversation(self, conversation: Conversation) -> None:
        head = self._key("conv", conversation.id)

        def attempt(pipe: redis.client.Pipeline) -> None:  # run again if an answer started meanwhile
            answering = cast(str | None, pipe.hget(head, "answering"))  # the parts of an answer being written go too
            pipe.multi()
            pipe.delete(*self._keys(conversation.id), *([self._parts(answering)] if answering else []))
            pipe.zrem(self._key("owner", conversation.owner), conversation.id)

        self.db.transaction(attempt, head)

    def save_file(self, conversation: Conversation, file_id: str, info: dict, data: bytes) -> None:
        stored = {"info": info, "data": base64.b64encode(data).decode("ascii")}
        pipe = self.db.pipeline()
        pipe.hset(self._key("files", conversation.id), file_id, json.dumps(stored))
        pipe.hset(self._key("sizes", conversation.id), file_id, len(data))
        self._touch(pipe, conversation.id, conversation.owner)
        pipe.execute()

    def load_file(self, conversation: Conversation, file_id: str) -> tuple[dict, bytes] | None:
        raw = self.db.hget(self._key("files", conversation.id), file_id)
        if raw is None:
            return None
        stored = json.loads(raw)
        return stored["info"], base64.b64decode(stored["data"])

    def kept_size(self, owner: str) -> int:
        pipe = self.db.pipeline()
        for conversation_id in self._conversation_ids(owner):
            pipe.hvals(self._key("sizes", conversation_id))
        return sum(int(size) for sizes in pipe.execute() for size in sizes)

    def save_share(self, conversation: Conversation, token: str, link: dict, snapshot: dict | None = None) -> bool:
        head, links, snapshots = (self._key(kind, conversation.id) for kind in ("conv", "links", "snapshots"))
        key = link["snapshot"]

        def attempt(pipe: redis.client.Pipeline) -> bool:  # run again if the chat or its snapshots changed meanwhile
            kept = pipe.hexists(snapshots, key)
            if not pipe.exists(head) or (snapshot is None and not kept):
                return False
            pipe.multi()
            if not kept:
                saved = json.dumps(snapshot)
                pipe.hset(snapshots, key, saved)
                pipe.hset(self._key("sizes", conversation.id), f"share:{key}", len(saved.encode()))
            pipe.hset(links, token, json.dumps(link))
            self._touch(pipe, conversation.id, conversation.owner)
            return True

        return self._atomically(attempt, head, snapshots)

    def load_share(self, conversation_id: str, token: str) -> tuple[dict, dict] | None:
        raw = self.db.hget(self._key("links", conversation_id), token)
        link = json.loads(raw) if raw else None
        snapshot = self.db.hget(self._key("snapshots", conversation_id), link["snapshot"]) if link else None
        return (link, json.loads(snapshot)) if link and snapshot else None

    def share_links(self, owner: str) -> list[tuple[str, str, dict]]:
        ids = self._conversation_ids(owner)
        pipe = self.db.pipeline()
        for conversation_id in ids:
            pipe.hgetall(self._key("links", conversation_id))
        found = zip(ids, pipe.execute(), strict=True)
        return [
            (conversation_id, token, json.loads(raw))
            for conversation_id, links in found
            for token, raw in links.items()
        ]

    def delete_share_link(self, conversation: Conversation, token: str) -> None:
        links, snapshots = self._key("links", conversation.id), self._key("snapshots", conversation.id)

        def attempt(pipe: redis.client.Pipeline) -> None:  # run again if a link was made or revoked meanwhile
            shown = {each: json.loads(raw)["snapshot"] for each, raw in pipe.hgetall(links).items()}
            key = shown.pop(token, None)
            pipe.multi()
            pipe.hdel(links, token)
            if key is not None and key not in shown.values():  # the last link that shows it
                pipe.hdel(snapshots, key)
                pipe.hdel(self._key("sizes", conversation.id), f"share:{key}")

        self.db.transaction(attempt, links)

    def add_message(self, message: Message) -> Message:
        now = time.time()
        conversation_id = message.conversation_id
        owner = cast(str | None, self.db.hget(self._key("conv", conversation_id), "owner"))
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
        """In one step: a reader sees the parts or the whole content, never neither."""
        keys = [self._key(kind, message.conversation_id) for kind in ("conv", "msgs")] + [self._parts(message.id)]
        self._update_message(keys, [message.id, json.dumps(asdict(message))])

    def append_to_answer(self, message: Message, start: int, text: str) -> bool:
        message.meta["saved_at"] = time.time()
        conversation_id = message.conversation_id
        keys = [self._key("conv", conversation_id), self._key("msgs", conversation_id), self._parts(message.id)]
        part: list[str | int] = [message.id, json.dumps(asdict(message)), start, f"{start}:{text}", self.idle_seconds]
        return bool(self._append_to_answer([*keys, self._key("stop", message.id)], part))

    def _parts(self, message_id: str) -> str:
        return self._key("parts", message_id)

    def start_answer(self, conversation: Conversation, messages: list[Message]) -> bool:
        order, stored, head = (self._key(kind, conversation.id) for kind in ("order", "msgs", "conv"))

        def attempt(pipe: redis.client.Pipeline) -> bool:  # run again if another writer changed any of the keys
            # the newest answer started: the only one that may be written
            answering = cast(str | None, pipe.hget(head, "answering"))
            latest = pipe.hget(stored, answering) if answering else None
            if latest and json.loads(latest)["status"] == "streaming":
                return False
            known = [pipe.hexists(stored, message.id) for message in messages]  # an answer to go on with
            pipe.multi()
            for message, stored_already in zip(messages, known, strict=True):
                pipe.hset(stored, message.id, json.dumps(asdict(message)))
                if not stored_already:
                    pipe.rpush(order, message.id)
            now = time.time()
            pipe.hset(head, mapping={"updated_at": now, "answering": messages[-1].id, "leaf_id": messages[-1].id})
            pipe.zadd(self._key("owner", conversation.owner), {conversation.id: now})
            self._touch(pipe, conversation.id, conversation.owner)
            return True

        return self._atomically(attempt, order, stored, head)

    def choose_branch(self, conversation: Conversation, leaf_id: str) -> None:
        pipe = self.db.pipeline()
        pipe.hset(self._key("conv", conversation.id), "leaf_id", leaf_id)
        self._touch(pipe, conversation.id, conversation.owner)
        pipe.execute()

    def read_message(self, conversation: Conversation, message_id: str, start: int = 0) -> Message | None:
        pipe = self.db.pipeline()  # MULTI: the message and its parts as of one moment
        pipe.hget(self._key("msgs", conversation.id), message_id)
        parts_key = self._parts(message_id)
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

    def add_to_count(self, key: str, amount: int, window_seconds: int) -> int:
        window = int(time.time() // window_seconds)
        counter = self._key("count", f"{key}@{window}")
        pipe = self.db.pipeline()
        pipe.incrby(counter, amount)
        pipe.expireat(counter, (window + 1) * window_seconds + 60)
        return int(pipe.execute()[0])

    def move_conversations(self, from_owner: str, to_owner: str) -> None:
        source, target = self._key("owner", from_owner), self._key("owner", to_owner)
        moving = cast(list[tuple[str, float]], self.db.zrange(source, 0, -1, withscores=True))
        if not moving:
            return
        pipe = self.db.pipeline()
        for conversation_id, _ in moving:
            pipe.hset(self._key("conv", conversation_id), "owner", to_owner)
        pipe.zadd(target, dict(moving))
        pipe.delete(source)
        pipe.expire(target, self.idle_seconds)
        pipe.execute()

    def create_record(self, kind: str, key: str, data: dict) -> bool:
        return bool(self.db.hsetnx(self._key("records", kind), key, json.dumps(data)))

    def save_record(self, kind: str, key: str, data: dict) -> None:
        self.db.hset(self._key("records", kind), key, json.dumps(data))

    def load_record(self, kind: str, key: str) -> dict | None:
        raw = self.db.hget(self._key("records", kind), key)
        return json.loads(raw) if raw else None

    def records(self, kind: str) -> list[dict]:
        return [json.loads(raw) for raw in self.db.hvals(self._key("records", kind))]

    def delete_record(self, kind: str, key: str) -> None:
        self.db.hdel(self._key("records", kind), key)

    def delete_record_if_unchanged(self, kind: str, key: str, data: dict) -> bool:
        return 1 == self._delete_if_unchanged(keys=[self._key("records", kind)], args=[key, json.dumps(data)])

    def request_stop(self, message_id: str) -> None:
        self.db.set(self._key("stop", message_id), 1, ex=STOP_SECONDS)

    def stop_requested(self, message_id: str) -> bool:
        return bool(self.db.exists(self._key("stop", message_id)))

    def messages(self, conversation: Conversation) -> list[Message]:
        ids = self.db.lrange(self._key("order", conversation.id), 0, -1)
        if not ids:
            return []
        raws = cast(list[str | None], self.db.hmget(self._key("msgs", conversation.id), ids))
        found, previous = [], None
        for raw in filter(None, raws):
            fields = json.loads(raw)
            fields.setdefault("parent_id", previous)  # saved before branches: each follows the one before
            found.append(Message(**fields))
            previous = fields["id"]
        return [self.read_message(conversation, m.id) or m if m.status == "streaming" else m for m in found]

    def every_conversation(self) -> list[Conversation]:
        heads = list(self.db.scan_iter(self._key("conv", "*"), count=1000))
        pipe = self.db.pipeline()
        for head in heads:
            pipe.hgetall(head)
        return [_conversation(fields) for fields in pipe.execute() if fields.get("owner")]

    def files_of(self, conversation: Conversation) -> list[tuple[str, dict, bytes]]:
        kept = cast(dict[str, str], self.db.hgetall(self._key("files", conversation.id)))
        stored = {file_id: json.loads(raw) for file_id, raw in kept.items()}
        return [(file_id, each["info"], base64.b64decode(each["data"])) for file_id, each in stored.items()]

    def every_record(self) -> list[tuple[str, str, dict]]:
        kinds = list(self.db.scan_iter(self._key("records", "*"), count=1000))
        pipe = self.db.pipeline()
        for kind in kinds:
            pipe.hgetall(kind)
        found = zip([kind.removeprefix(self._key("records", "")) for kind in kinds], pipe.execute(), strict=True)
        return [(kind, key, json.loads(raw)) for kind, records in found for key, raw in records.items()]

    def restore_conversation(self, conversation: Conversation, messages: list[Message]) -> None:
        pipe = self.db.pipeline()
        self._save(pipe, conversation)
        pipe.hset(self._key("conv", conversation.id), "leaf_id", conversation.leaf_id)
        pipe.zadd(self._key("owner", conversation.owner), {conversation.id: conversation.updated_at})
        for message in messages:
            pipe.hset(self._key("msgs", conversation.id), message.id, json.dumps(asdict(message)))
            pipe.rpush(self._key("order", conversation.id), message.id)
        self._touch(pipe, conversation.id, conversation.owner)
        pipe.execute()

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
        leaf_id=fields.get("leaf_id", ""),
    )
