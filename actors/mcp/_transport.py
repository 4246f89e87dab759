"""MCP client transports: a stdio server's pipe (from the host) and the SDK's network transports.

A stdio server runs inside the sandbox; the host (the worker) hands the bridge a ``StdioPipe``:
the process's stdout and stdin as asyncio streams, carried over the executor's channel. This
module adapts them to the SDK's read/write streams as the SDK's own stdio transport does:
newline-delimited JSON-RPC, each line parsed with the SDK's message adapter, each outgoing
message serialised by the SDK's models. SSE and streamable HTTP are the SDK's transports as they are.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import msgspec
import structlog

from ._config import AnyServer, SseServer, StdioServer

log = structlog.get_logger()

MAX_LINE_BYTES = 32 * 2**20
"""One JSON-RPC message from a server; a longer line ends the connection."""
READ_CHUNK = 64 * 1024
SSE_CONNECT_TIMEOUT_S = 10.0


class StdioPipe(msgspec.Struct, frozen=True, kw_only=True):
    """A started stdio server: its stdout, its stdin, and how to read its stderr's tail."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    stderr_tail: Callable[[], Awaitable[str]]
    pid: int = 0


StdioOpener = Callable[[StdioServer], Awaitable[StdioPipe]]
"""Starts a stdio server for a session (the worker's executor channel); raises ``OSError`` or any
exception whose text says why it could not."""


class PipeState:
    """What the bridge can see of a stdio connection: whether its server closed it."""

    def __init__(self) -> None:
        self.eof = False


@asynccontextmanager
async def pipe_transport(pipe: StdioPipe, state: PipeState) -> AsyncIterator[Any]:
    """The SDK's (read stream, write stream) over a stdio server's pipe; closing ends the process."""
    from mcp.shared.message import SessionMessage

    read_send, read_recv = anyio.create_memory_object_stream[Any](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)

    async def from_server() -> None:
        async with read_send:
            try:
                await _read_lines(pipe.reader, read_send)
            except (ConnectionError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            finally:
                state.eof = True

    async def to_server() -> None:
        async with write_recv:
            try:
                async for message in write_recv:
                    line = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    pipe.writer.write(line.encode() + b"\n")
                    await pipe.writer.drain()
            except (ConnectionError, OSError):
                await read_send.aclose()  # the session sees the end instead of waiting forever

    async with anyio.create_task_group() as tg:
        tg.start_soon(from_server)
        tg.start_soon(to_server)
        try:
            yield read_recv, write_send
        finally:
            pipe.writer.close()
            tg.cancel_scope.cancel()


async def _read_lines(reader: asyncio.StreamReader, send: Any) -> None:
    import mcp_types
    from mcp.shared.message import SessionMessage

    buffer = bytearray()
    while chunk := await reader.read(READ_CHUNK):
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if not line.strip():
                continue
            try:
                message: Any = SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
            except ValueError as exc:
                log.warning("mcp_bad_line", error=str(exc)[:200])
                message = exc
            await send.send(message)
        if len(buffer) > MAX_LINE_BYTES:
            log.warning("mcp_line_too_long", bytes=len(buffer))
            return


def network_transport(server: AnyServer, stack: AsyncExitStack) -> AbstractAsyncContextManager[Any]:
    """The SDK's client transport for an SSE or streamable-HTTP server (the HTTP client it needs
    is entered on ``stack``)."""
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {server.api_key}"} if getattr(server, "api_key", None) else None
    if isinstance(server, SseServer):
        return sse_client(server.url, headers=headers, timeout=SSE_CONNECT_TIMEOUT_S)
    http = create_mcp_http_client(headers=headers)
    stack.push_async_callback(http.aclose)
    return streamable_http_client(server.url, http_client=http)
