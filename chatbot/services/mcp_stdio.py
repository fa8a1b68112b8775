"""The transport to an MCP server the chat starts (stdio): the SDK's process handling (own process group, the
spec's shutdown) with a reader of our own, in a working directory of the server's own (not the chat's, where its
.env is), its stderr logged with its secrets hidden and at most STDERR_BYTES_A_MINUTE of it. The SDK's reader joins
`buffer + chunk` for every piece of a line (a 20 MB result took 16 s of the one MCP loop thread and 150 MB); this
one keeps a line's pieces in a list, joins them once, and breaks the session off once a line passes `limit` bytes."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.services import redaction
from chatbot.services.tool_servers import ToolServer

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream
    from mcp.client._transport import TransportStreams

log = logging.getLogger(__name__)
STDERR_LINE_CHARS = 500  # of one line a server writes to stderr, logged
STDERR_BYTES_A_MINUTE = 20_000  # of what a server writes to stderr, logged; the rest counted


class LineTooLong(Exception):
    """The server wrote a line (one message) longer than the limit."""


@contextlib.asynccontextmanager
async def stdio_transport(server: ToolServer, limit: int, broken: list[str]) -> AsyncIterator[TransportStreams]:
    """`server`'s program started with its own environment over the SDK's few safe variables (PATH, HOME,
    USER...), never the chat's secrets; its messages as the SDK's streams. A message past `limit` bytes ends the
    session, and `broken` gets the reason in words."""
    import anyio
    from mcp.client.stdio import _drain_stdout, _parse_line, _stop_server_process, get_default_environment
    from mcp.shared.message import SessionMessage

    assert server.command is not None
    process = await anyio.open_process(
        [server.command, *server.args],
        env=get_default_environment() | server.env,
        cwd=server.cwd or own_folder(server.name),
        stderr=subprocess.PIPE,
        start_new_session=True,  # its whole tree is stopped with it
    )
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read() -> None:
        assert process.stdout is not None
        try:
            async with read_writer:
                try:
                    async for line in lines(process.stdout, limit):
                        await read_writer.send(_parse_line(line.decode("utf-8", "replace")))
                except LineTooLong:
                    megabytes = limit // 2**20
                    log.warning(
                        "MCP server %s sent a message of more than %d MB: it was broken off", server.name, megabytes
                    )
                    broken.append(f"it sent a message of more than {megabytes} MB")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            pass  # the session or the process is gone
        finally:
            await _drain_stdout(process)  # a server blocked writing could not see its stdin close

    async def write() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()  # the session sees the end rather than wait on an answer forever

    async with anyio.create_task_group() as tasks:
        assert process.stderr is not None
        tasks.start_soon(relay_stderr, process.stderr, server)
        tasks.start_soon(read)
        tasks.start_soon(write)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled session still stops its process
                read_stream.close()
                write_stream.close()
                await _stop_server_process(process)
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    await stream.aclose()
            tasks.cancel_scope.cancel()


async def relay_stderr(stream: ByteReceiveStream, server: ToolServer) -> None:
    """Log what `server` writes to `stream` (its stderr), line by line: its secrets hidden, other than printable
    characters escaped, each line cut at STDERR_LINE_CHARS, at most STDERR_BYTES_A_MINUTE a minute (the lines past
    it counted once the minute is over). Read to its end, so the server never blocks on a full pipe."""
    secrets = redaction.secrets_of_servers([server])
    kept = 4 * (STDERR_LINE_CHARS + max(map(len, secrets), default=0))  # bytes of a line: a secret cut off whole
    minute, logged, left_out, tail = time.monotonic(), 0, 0, b""
    async for chunk in stream:
        if time.monotonic() - minute >= 60:
            if left_out:
                log.warning("MCP server %s wrote %d more lines to stderr: left out of the log", server.name, left_out)
            minute, logged, left_out = time.monotonic(), 0, 0
        *lines, tail = (tail + chunk).split(b"\n")  # a line written in pieces is logged whole, its beginning
        tail = tail[:kept]
        for line in lines:
            if logged >= STDERR_BYTES_A_MINUTE:
                left_out += 1
                continue
            text = redaction.scrub(line[:kept].decode("utf-8", "replace"), secrets)[:STDERR_LINE_CHARS]
            text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
            logged += len(text)
            log.warning("MCP server %s says: %s", server.name, text)


def own_folder(name: str) -> Path:
    """The working directory of stdio server `name` when its entry gives no `cwd`: a folder only it uses, under
    the user's cache (~/.cache/chatbot/mcp-servers/NAME), made empty and private the first time."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "chatbot" / "mcp-servers" / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


async def lines(stream: ByteReceiveStream, limit: int) -> AsyncIterator[bytes]:
    """Each line of `stream` without its newline, in time linear in its length; LineTooLong once one passes
    `limit` bytes (what came of it so far is dropped)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if size + end - start > limit:
                raise LineTooLong()
            parts.append(chunk[start:end])
            yield b"".join(parts)
            parts, size, start = [], 0, end + 1
        parts.append(chunk[start:])
        size += len(chunk) - start
        if size > limit:
            raise LineTooLong()
