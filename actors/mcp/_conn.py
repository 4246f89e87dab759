"""One MCP client session to one server for one corral session, owned by one task.

The SDK's anyio contexts (the transport, the ``ClientSession``) must be entered and exited in the
same task, so each (corral session, server) pair has a supervisor task that owns them and serves
requests from a queue, one at a time. The session is opened on the first request and reused by
every later one; when the server dies (or its connection breaks) the request in flight fails with
``ServerDied`` and the next request opens a fresh session (a stdio server that closed its pipe
between calls is restarted for the next call without failing it).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from contextlib import AsyncExitStack
from typing import Any, Callable

import anyio
import structlog

from protocol import codes

from ._config import AnyServer, StdioServer
from ._transport import PipeState, StdioOpener, network_transport, pipe_transport

log = structlog.get_logger()

OPEN_TIMEOUT_S = 30.0
"""From spawning or connecting to a server to its answer to ``initialize`` and ``tools/list``."""
STDERR_TAIL_CHARS = 2000
CLOSE_GRACE_S = 2.0
"""How long a closing connection lets a call in flight finish before its task is cancelled."""
FAILED_KEPT_S = 10.0
"""A server that could not be opened is not tried again for this long when a call without
``server`` looks for a tool (a call naming the server tries at once)."""


class BridgeError(Exception):
    """A failure the bridge answers as an ``error`` observation with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Request:
    def __init__(self, op: str, tool: str = "", arguments: dict[str, Any] | None = None,
                 timeout_s: float | None = None) -> None:
        self.op = op
        self.tool = tool
        self.arguments = arguments
        self.timeout_s = timeout_s
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class ServerConnection:
    """The supervisor of one server's client session within one corral session."""

    def __init__(self, session_id: str, server: AnyServer, stdio: StdioOpener | None) -> None:
        self.session_id = session_id
        self.server = server
        self._stdio = stdio
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stderr: Callable[[], Any] | None = None
        self.tools: list[Any] | None = None
        """The server's tools (SDK ``Tool``s) as the last open or list gave them."""
        self.opens = 0
        """How many client sessions were opened (one per start of the server)."""
        self.pid = 0
        self.failure: tuple[float, BridgeError] | None = None
        """When and why the last open failed (cleared by a successful open)."""

    def recent_failure(self) -> BridgeError | None:
        if self.failure is not None and time.monotonic() - self.failure[0] < FAILED_KEPT_S:
            return self.failure[1]
        return None

    async def list_tools(self) -> list[Any]:
        return await self._submit(_Request("list"))

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        return await self._submit(_Request("call", tool, arguments, timeout_s))

    async def _submit(self, request: _Request) -> Any:
        if self._task is None or self._task.done():  # (done: only after a bug; a new supervisor serves on)
            # A context of its own: its log lines must not carry the first caller's action id.
            self._task = asyncio.create_task(self._run(), name=f"mcp:{self.session_id}:{self.server.name}",
                                             context=contextvars.Context())
        self._queue.put_nowait(request)
        return await request.future

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_GRACE_S)
        except TimeoutError:  # a call in flight: cancelled in the task that owns the contexts, which unwind there
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ the supervisor task
    async def _run(self) -> None:
        with structlog.contextvars.bound_contextvars(session_id=self.session_id, mcp_server=self.server.name):
            request = await self._queue.get()
            while request is not None:
                closed, carry = await self._lifetime(request)
                if closed:
                    return
                request = carry or await self._queue.get()

    async def _lifetime(self, request: _Request | None) -> tuple[bool, _Request | None]:
        """One client session: open it, serve requests until it breaks or the bridge closes it.
        Returns (closed, a request that a fresh session must serve: its server had gone away)."""
        state = PipeState()
        opened = False
        carry: _Request | None = None
        try:
            async with AsyncExitStack() as stack:
                session = await self._open(stack, state)
                opened = True
                while request is not None:
                    if state.eof:  # the server went away between requests: a fresh one serves this
                        log.info("mcp_server_gone", pid=self.pid)
                        carry = request
                        break
                    if not await self._serve(session, request):
                        break
                    request = await self._queue.get()
                else:
                    return True, None
        except Exception as exc:  # noqa: BLE001 - a bad server must never end the supervisor
            if request is not None and not request.future.done():
                request.fail(await self._failure(exc, opened))
        return False, carry

    async def _open(self, stack: AsyncExitStack, state: PipeState) -> Any:
        from mcp import ClientSession

        if isinstance(self.server, StdioServer):
            assert self._stdio is not None, "a stdio server needs the host's opener"
            pipe = await self._stdio(self.server)
            self._stderr, self.pid = pipe.stderr_tail, pipe.pid
            streams = await stack.enter_async_context(pipe_transport(pipe, state))
        else:
            streams = await stack.enter_async_context(network_transport(self.server, stack))
        session = await stack.enter_async_context(ClientSession(*streams))
        with anyio.fail_after(OPEN_TIMEOUT_S):
            await session.initialize()
            self.tools = await _all_tools(session)
        self.opens += 1
        self.failure = None
        log.info("mcp_session_opened", tools=len(self.tools), opens=self.opens, pid=self.pid or None)
        return session

    async def _serve(self, session: Any, request: _Request) -> bool:
        """Answer one request; False when the connection is gone (the request failed with it)."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            if request.op == "list":
                self.tools = await _all_tools(session)
                request.resolve(self.tools)
            else:
                request.resolve(await session.call_tool(request.tool, request.arguments,
                                                        read_timeout_seconds=request.timeout_s))
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                request.fail(BridgeError(codes.TIMEOUT, f"{self.server.name}: {request.tool or 'tools/list'} "
                                                        f"did not answer within {request.timeout_s:g} s"))
                return True
            if exc.code == CONNECTION_CLOSED:
                request.fail(await self._failure(exc, True))
                return False
            request.fail(exc)  # the server answered with a JSON-RPC error: the bridge reports it
        return True

    async def _failure(self, exc: BaseException, opened: bool) -> BridgeError:
        """What a broken or unopenable session means for the request that met it."""
        detail = _describe(exc)
        tail = await self._stderr_tail()
        name = self.server.name
        if not opened:
            log.warning("mcp_server_unavailable", error=detail)
            error = BridgeError(codes.MCP_UNAVAILABLE, f"MCP server {name!r} could not be started or reached: {detail}"
                                                       + (f"; its stderr ends with:\n{tail}" if tail else ""))
            self.failure = (time.monotonic(), error)
            return error
        log.warning("mcp_server_died", error=detail)
        return BridgeError(codes.MCP_SERVER_DIED, f"MCP server {name!r} died or dropped the connection: {detail}; "
                                                  "the next call starts it afresh" + (f"; its stderr ends with:\n{tail}" if tail else ""))

    async def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            text: str = await self._stderr()
        except Exception:  # noqa: BLE001 - the tail is a courtesy; the sandbox may be gone
            return ""
        return text[-STDERR_TAIL_CHARS:].strip()


async def _all_tools(session: Any) -> list[Any]:
    from mcp_types import PaginatedRequestParams

    tools: list[Any] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups (anyio's task groups raise them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
