"""The ``mcp`` handler: a session's ``mcp_list`` and ``mcp_call``, answered by the worker's MCP bridge.

The bridge (``actors.mcp``, one per worker process) owns the client sessions; this handler gives
it the session's servers when the session opens, and the way to start a stdio server inside the
sandbox: the executor spawns it as the sandbox's user and carries its stdin/stdout over the
session's private channel (``ExecutorClient.spawn_stdio``), so it sees the sandbox's files and
works with network ``none``. The session's MCP actions share one lane (in publish order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from executor.client import ExecutorClient, ExecutorUnavailable, SpawnFailed
from protocol import AnyAction, AnyObservation, McpCall, McpList

from ._handlers import HANDLERS, Emit, Handler, SessionContext

if TYPE_CHECKING:
    from actors.mcp import McpBridge, StdioOpener, StdioPipe, StdioServer

log = structlog.get_logger()

SERVICE = "mcp"
"""The name of the bridge in ``SessionContext.services``."""


class McpHandler(Handler):
    kinds = frozenset({"mcp_list", "mcp_call"})

    def __init__(self, ctx: SessionContext, bridge: McpBridge) -> None:
        self._ctx = ctx
        self._bridge = bridge

    def lane(self, action: AnyAction) -> str:
        return "mcp"

    async def open(self) -> None:
        from actors.mcp import McpConfigError

        opener = _stdio_opener(self._ctx.client)
        try:  # checked at create (invalid_spec); only a worker restarted with another config gets here
            self._bridge.open_session(self._ctx.session_id, self._ctx.spec.mcp, opener)
        except McpConfigError as exc:
            log.error("mcp_spec_rejected", session_id=self._ctx.session_id, error=str(exc))
            self._bridge.open_session(self._ctx.session_id, {}, opener)

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        if isinstance(action, McpList):
            return await self._bridge.list(self._ctx.session_id, action)
        assert isinstance(action, McpCall)
        return await self._bridge.call(self._ctx.session_id, action)

    async def aclose(self) -> None:
        await self._bridge.close_session(self._ctx.session_id)


def _stdio_opener(client: ExecutorClient) -> StdioOpener:
    async def open_stdio(server: StdioServer) -> StdioPipe:
        from actors.mcp import StdioPipe

        try:
            reader, writer, handle = await client.spawn_stdio([server.command, *server.args], dict(server.env))
        except SpawnFailed as exc:
            raise OSError(f"the sandbox could not start it: {exc.reason}") from None
        except ExecutorUnavailable as exc:
            raise OSError(f"the sandbox's executor did not answer: {exc}") from None
        return StdioPipe(reader=reader, writer=writer, stderr_tail=handle.stderr_tail, pid=handle.pid)

    return open_stdio


def _factory(ctx: SessionContext) -> McpHandler | None:
    bridge = ctx.services.get(SERVICE)
    return McpHandler(ctx, bridge) if bridge is not None else None  # type: ignore[arg-type]


HANDLERS.register("mcp", _factory)
