"""Talking to MCP servers with the official SDK (PyPI `mcp`): their tools listed, one tool called with a deadline
and Stop, every failure raised as a `ToolServerError` in words.

The SDK is asyncio; the chat's workers are gunicorn gthread (threads) or gevent (greenlets). Each process runs one
asyncio loop in a thread of its own and hands it coroutines (`run_coroutine_threadsafe`); the caller waits on the
returned future. Under gevent the thread is a greenlet and the loop's selector gevent's, so it waits cooperatively
like everything else in the worker; under gthread it is a real thread. One loop per process (made again after a
fork) lets each server's session stay open between calls: a stdio server is started once per process, not once a
call, and an HTTP server's session is reused. A session that fails is dropped and opened anew at the next use.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from chatbot.services import redaction
from chatbot.services.tool_servers import ToolServer

if TYPE_CHECKING:  # the SDK takes half a second to import: only a process that talks to an MCP server pays it
    import httpx2
    from mcp import Client

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_CHECK_SECONDS = 0.1
MESSAGE_BYTES = 16 * 1024 * 1024  # of one message of an HTTP server (its result is cut at far less: the rest waste)


class ToolServerError(Exception):
    """A server that could not be reached, did not answer in time, or refused: str() says so in words."""


class ToolCallStopped(Exception):
    """Stop was pressed while the call ran: it was cancelled on its server."""


@dataclass(frozen=True)
class ServerTool:
    """One tool as its server lists it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolOutput:
    """What a call returned: its text (every text part, and a word for each other part), its images as
    (MIME type, bytes), and whether the tool says it failed."""

    text: str
    images: list[tuple[str, bytes]] = field(default_factory=list)
    failed: bool = False


def list_tools(server: ToolServer, timeout: float) -> list[ServerTool]:
    """The tools of `server`, within `timeout` seconds, and as long again to open its session when it is not."""

    async def listing(client: Client) -> list[ServerTool]:
        tools, cursor = [], None
        for _ in range(100):  # pages
            page = await client.list_tools(cursor=cursor)
            tools += [ServerTool(server.name, t.name, t.description or "", dict(t.input_schema)) for t in page.tools]
            if not (cursor := page.next_cursor):
                break
        return tools

    return _run(server, listing, timeout, None, "list its tools", timeout)


def call_tool(
    server: ToolServer,
    name: str,
    arguments: dict[str, Any],
    timeout: float,
    cancel: threading.Event | None,
    connect_timeout: float = 10.0,
) -> ToolOutput:
    """Call the tool `name` of `server` (opening its session first, within `connect_timeout`, if it is not open);
    after `timeout` seconds, or as soon as `cancel` is set, the call is cancelled on the server (MCP's
    notifications/cancelled) and ToolServerError or ToolCallStopped raised."""

    async def calling(client: Client) -> ToolOutput:
        return _output(await client.call_tool(name, arguments))

    return _run(server, calling, timeout, cancel, f"run {name}", connect_timeout)


def forget_connections() -> None:
    """Close every open session (tests, and a configuration that changed)."""
    with _lock:
        loop = _loops.pop(os.getpid(), None)
    if loop is not None:
        asyncio.run_coroutine_threadsafe(loop.close_all(), loop.loop).result(10)
        loop.loop.call_soon_threadsafe(loop.loop.stop)


def _output(result: Any) -> ToolOutput:
    texts: list[str] = []
    images: list[tuple[str, bytes]] = []
    for part in result.content:
        kind = getattr(part, "type", "")
        if kind == "text":
            texts.append(part.text)
        elif kind == "image":
            images.append((part.mime_type, base64.b64decode(part.data)))
            texts.append(f"[image: {part.mime_type}]")
        elif kind == "resource_link":
            texts.append(f"[resource: {part.uri}]")
        elif kind == "resource" and hasattr(part.resource, "text"):
            texts.append(part.resource.text)
        else:
            texts.append(f"[{kind or 'unknown'} content]")
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return ToolOutput("\n".join(texts), images, bool(result.is_error))


class _Connection:
    """One server's session, held open by a task of its own (the SDK's scopes end in the task that opened them)."""

    def __init__(self, server: ToolServer) -> None:
        self.server = server
        self.opened: asyncio.Future[Client] | None = None
        self.task: asyncio.Task[None] | None = None
        self.refused: list[int] = []  # the HTTP statuses of its refusals (the SDK's errors leave them out)
        self.broken: list[str] = []  # why its transport broke the session off (a message too long), in words

    async def client(self, timeout: float) -> Client:
        if self.opened is None:
            self.opened = asyncio.get_running_loop().create_future()
            self.task = asyncio.create_task(self._keep(self.opened))
        return await asyncio.wait_for(asyncio.shield(self.opened), timeout)

    async def _keep(self, opened: asyncio.Future[Client]) -> None:
        try:
            async with _session(self.server, self.refused, self.broken) as client:
                opened.set_result(client)
                await asyncio.Event().wait()  # until dropped
        except BaseException as error:  # the SDK's task groups raise groups; a cancelled task, CancelledError
            if not opened.done():
                opened.set_exception(ToolServerError(_refusal(self.refused) or _reason(error)))
                opened.exception()  # retrieved: a failure to open is told by client(), not logged by asyncio
            elif not isinstance(error, asyncio.CancelledError):
                reason = redaction.without_server_secrets(_reason(error), self.server)
                log.warning("the session with MCP server %s ended: %s", self.server.name, reason)
            if isinstance(error, asyncio.CancelledError):
                raise
        finally:
            if self.opened is opened:
                self.opened = None

    def drop(self) -> None:
        self.opened = None
        if self.task is not None:
            self.task.cancel()


class _Loop:
    """The process's asyncio loop, in a thread of its own, and the sessions it holds."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections: dict[str, _Connection] = {}
        threading.Thread(target=self._run, daemon=True, name="mcp-loop").start()

    def _run(self) -> None:
        self.loop.run_forever()
        self.loop.close()

    def connection(self, server: ToolServer) -> _Connection:
        current = self.connections.get(server.name)
        if current is None or current.server != server:
            if current is not None:
                current.drop()
            current = self.connections[server.name] = _Connection(server)
        return current

    async def close_all(self) -> None:
        tasks = [connection.task for connection in self.connections.values() if connection.task is not None]
        for connection in self.connections.values():
            connection.drop()
        self.connections.clear()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


_loops: dict[int, _Loop] = {}
_lock = threading.Lock()


def _process_loop() -> _Loop:
    with _lock:
        if (loop := _loops.get(os.getpid())) is None:
            _loops.clear()  # a parent's loop thread did not survive the fork
            loop = _loops[os.getpid()] = _Loop()
        return loop


def _run(
    server: ToolServer,
    work: Callable[[Client], Awaitable[T]],
    timeout: float,
    cancel: threading.Event | None,
    doing: str,
    connect_timeout: float,
) -> T:
    """Run `work` on `server`'s session in the process's loop, within `timeout` seconds once the session is open
    (within `connect_timeout`), stopped by `cancel`."""
    process = _process_loop()

    async def attempt() -> T:
        from mcp import MCPError  # imported by the loop's first session already

        connection = process.connection(server)
        try:
            client = await connection.client(connect_timeout)
        except TimeoutError:
            connection.drop()
            raise ToolServerError(
                f"The MCP server {server.name} could not be reached within {connect_timeout:g} s."
            ) from None
        except ToolServerError as error:
            raise ToolServerError(f"The MCP server {server.name} could not be reached: {error}.") from None
        try:
            return await asyncio.wait_for(work(client), timeout)
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as error:
            if isinstance(error, MCPError) and not connection.broken:  # a JSON-RPC error: the session is fine
                raise ToolServerError(f"The MCP server {server.name} refused to {doing}: {error}.") from None
            connection.drop()  # the transport broke: open a new session next time
            why = connection.broken.pop() if connection.broken else _reason(error)  # the SDK: "Connection closed"
            raise ToolServerError(f"The MCP server {server.name} failed to {doing}: {why}.") from None

    future = asyncio.run_coroutine_threadsafe(attempt(), process.loop)
    return _wait(future, timeout + connect_timeout, cancel, server.name, doing, timeout)


def _wait(
    future: concurrent.futures.Future[T],
    most: float,
    cancel: threading.Event | None,
    name: str,
    doing: str,
    timeout: float,
) -> T:
    """The future's result; cancelled when `cancel` is set or a little after the most it may take (`most`)."""
    end = time.monotonic() + most + 1.0  # the coroutine keeps its own deadlines: this one is a safety net
    while True:
        try:
            return future.result(STOP_CHECK_SECONDS)
        except TimeoutError:  # not done yet, or the coroutine's own deadline passed
            if not future.done():
                if cancel is not None and cancel.is_set():
                    future.cancel()
                    raise ToolCallStopped() from None
                if time.monotonic() < end:
                    continue
                future.cancel()
        except concurrent.futures.CancelledError:
            pass
        raise ToolServerError(f"The MCP server {name} did not {doing} within {timeout:g} s (TOOL_TIMEOUT_S).")


@contextlib.asynccontextmanager
async def _session(server: ToolServer, refused: list[int], broken: list[str]) -> AsyncIterator[Client]:
    """An open session with `server` over its transport; the status of each HTTP refusal added to `refused`, and
    why the transport broke the session off to `broken`."""
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    from chatbot.services.mcp_stdio import stdio_transport

    if server.transport == "stdio":
        async with Client(stdio_transport(server, MESSAGE_BYTES, broken)) as client:
            yield client
        return
    assert server.url is not None

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            refused.append(response.status_code)

    def bounded_client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        timeout = timeout or httpx2.Timeout(30.0, read=300.0)  # the SDK's own: a stream may stay open a while
        transport = _bounded_transport(server.name, broken)
        asked = {"Accept-Encoding": "identity", **(headers or {})}  # a message is bounded as it comes, unpacked
        return httpx2.AsyncClient(
            headers=asked, timeout=timeout, auth=auth, event_hooks={"response": [note]}, transport=transport
        )

    if server.transport == "sse":
        async with Client(
            sse_client(server.url, headers=dict(server.headers), httpx_client_factory=bounded_client)
        ) as client:
            yield client
        return
    async with (
        bounded_client(dict(server.headers)) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        yield client


def _bounded_transport(name: str, broken: list[str]) -> httpx2.AsyncBaseTransport:
    """An HTTP transport whose responses break off (logged, and said in `broken`) once one message (a JSON body,
    or one event of a stream) passes MESSAGE_BYTES: server `name` cannot make the chat hold a gigabyte (and copies
    of it) before its result is cut. A compressed response (asked for none) is refused: its bytes, counted as they
    come, could unpack to a thousand times as many."""
    import httpx2

    class Bounded(httpx2.AsyncByteStream):
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            size = 0  # of the message being read: since the blank line that ended the one before
            async for chunk in self.stream:
                end = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\n\r\n"))
                size = len(chunk) - end if end >= 0 else size + len(chunk)
                if size > MESSAGE_BYTES:
                    log.warning("MCP server %s sent a message of more than %d MB: it was broken off", name, size >> 20)
                    broken.append(f"it sent a message of more than {MESSAGE_BYTES // 2**20} MB")
                    raise httpx2.ReadError(broken[-1])
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    class Transport(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            response = await super().handle_async_request(request)
            if (packed := response.headers.get("Content-Encoding", "identity").lower()) != "identity":
                await response.aclose()
                log.warning("MCP server %s sent a message compressed as %s: it was refused", name, packed[:40])
                broken.append(f"it sent a message compressed ({packed[:40]}), which the chat does not take")
                raise httpx2.ReadError(broken[-1])
            response.stream = Bounded(response.stream)
            return response

    return Transport()


def _refusal(statuses: list[int]) -> str:
    """What the server's HTTP refusal says, in words."""
    if not statuses:
        return ""
    status = statuses[-1]
    if status in (401, 403):
        return f"it answered {status}: check this server's headers in MCP_SERVERS or MCP_CONFIG"
    return f"it answered {status}: check this server's url in MCP_SERVERS or MCP_CONFIG"


def _reason(error: BaseException) -> str:
    """The innermost cause of a failure, in a few words."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    cause: BaseException | None = error
    while cause is not None:  # an operating system's word is the plainest (connection refused, no such file)
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            return (os.strerror(cause.errno) if cause.errno else str(cause.strerror)).lower()
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__
