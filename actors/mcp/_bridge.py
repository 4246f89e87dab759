"""The MCP bridge: every corral session's MCP servers, their tools, and calls to them.

One ``McpBridge`` per worker process. A session registers its servers when it opens (the
worker's config merged with its spec's ``mcp``); nothing starts until an action needs it. Each
(session, server) pair is one ``ServerConnection``: one client session, opened on first use,
reused for every later call, closed with the corral session. Calls resolve the tool by name
(``server`` only when two servers offer it), check the arguments against the tool's input schema
before sending anything, and turn every failure into an ``error`` with a stable code. A bad
server fails its own calls; the bridge and the session's other servers go on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import structlog

from protocol import Error, McpCall, McpList, McpResult, McpServerProblem, McpTools, codes, new_id

from . import _convert
from ._config import DEFAULT_TIMEOUT_S, MCPConfig, ShttpServer, session_config
from ._conn import BridgeError, ServerConnection
from ._transport import StdioOpener

log = structlog.get_logger()


class McpBridge:
    """Serves ``mcp_list`` and ``mcp_call`` for the sessions of one host."""

    def __init__(self, host: MCPConfig = MCPConfig()) -> None:
        self.host = host
        self._sessions: dict[str, dict[str, ServerConnection]] = {}
        self._validators: dict[tuple[str, str, str], Any] = {}

    def open_session(self, session_id: str, spec_mcp: Mapping[str, Any], stdio: StdioOpener | None) -> None:
        """Register a session's servers (``McpConfigError`` when its spec's ``mcp`` is unusable)."""
        config = session_config(self.host, spec_mcp)
        self._sessions[session_id] = {s.name: ServerConnection(session_id, s, stdio) for s in config.servers()}

    def servers(self, session_id: str) -> list[str]:
        return list(self._sessions.get(session_id, {}))

    def statistics(self, session_id: str) -> dict[str, int]:
        """Client sessions opened so far per server of a session (1 for a server used and never restarted)."""
        return {name: conn.opens for name, conn in self._sessions.get(session_id, {}).items()}

    async def close_session(self, session_id: str) -> None:
        conns = self._sessions.pop(session_id, {})
        await asyncio.gather(*(conn.aclose() for conn in conns.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(self.close_session(sid) for sid in list(self._sessions)))

    # ------------------------------------------------------------------ mcp_list
    async def list(self, session_id: str, action: McpList) -> McpTools | Error:
        conns = self._sessions.get(session_id, {})
        if action.server is not None and action.server not in conns:
            return _error(session_id, action.id, codes.UNKNOWN_TOOL, _no_server(action.server, conns))
        chosen = [conns[action.server]] if action.server is not None else list(conns.values())
        listed = await asyncio.gather(*(_listing(conn) for conn in chosen))
        tools, problems = [], []
        for conn, found in zip(chosen, listed):
            if isinstance(found, BridgeError):
                problems.append(McpServerProblem(server=conn.server.name, code=found.code, message=found.message))
            else:
                tools.extend(_convert.tool(conn.server.name, t) for t in found)
        return McpTools(id=new_id(), cause=action.id, session_id=session_id, tools=tools, unavailable=problems)

    # ------------------------------------------------------------------ mcp_call
    async def call(self, session_id: str, action: McpCall) -> McpResult | Error:
        try:
            conn, tool = await self._resolve(session_id, action)
            self._validate(conn, tool, action.arguments)
            return await self._call(session_id, action, conn, tool)
        except BridgeError as exc:
            return _error(session_id, action.id, exc.code, exc.message)

    async def _resolve(self, session_id: str, action: McpCall) -> tuple[ServerConnection, Any]:
        """The server and SDK tool an action names: its server's, or the only one of that name."""
        conns = self._sessions.get(session_id, {})
        if action.server is not None:
            conn = conns.get(action.server)
            if conn is None:
                raise BridgeError(codes.UNKNOWN_TOOL, _no_server(action.server, conns))
            candidates = [conn]
        else:
            candidates = list(conns.values())
        listed = await asyncio.gather(*(_listing(conn, cached=True) for conn in candidates))
        offering = [(conn, t) for conn, found in zip(candidates, listed) if not isinstance(found, BridgeError)
                    for t in found if t.name == action.tool]
        if len(offering) > 1:
            names = ", ".join(conn.server.name for conn, _ in offering)
            raise BridgeError(codes.AMBIGUOUS_TOOL, f"tool {action.tool!r} is offered by the servers {names}: "
                                                    "name the one to call in the action's server field")
        if offering:
            return offering[0]
        failed = [f for f in listed if isinstance(f, BridgeError)]
        if action.server is not None and failed:
            raise failed[0]  # the one server asked for could not list its tools: say why
        raise BridgeError(codes.UNKNOWN_TOOL, _no_tool(action, candidates, failed))

    def _validate(self, conn: ServerConnection, tool: Any, arguments: dict[str, Any]) -> None:
        """The arguments against the tool's input schema, before anything is sent (``invalid_argument``)."""
        import jsonschema

        schema = tool.input_schema or {}
        key = (conn.session_id, conn.server.name, tool.name)
        validator = self._validators.get(key)
        if validator is None or validator.schema is not schema:
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError:
                return  # the server's schema is broken: let the server judge the arguments
            validator = self._validators[key] = cls(schema)
        if validator.is_valid(arguments):
            return
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is not None:
            where = "".join(f"[{p!r}]" for p in error.absolute_path) or " (top level)"
            raise BridgeError(codes.INVALID_ARGUMENT, f"arguments of {conn.server.name}.{tool.name} do not match "
                                                      f"its input schema at arguments{where}: {error.message}")

    async def _call(self, session_id: str, action: McpCall, conn: ServerConnection, tool: Any) -> McpResult:
        default = conn.server.timeout_s if isinstance(conn.server, ShttpServer) else DEFAULT_TIMEOUT_S
        timeout_s = action.timeout_s or default
        retried = False
        while True:
            try:
                result = await conn.call(tool.name, action.arguments, timeout_s)
                break
            except BridgeError as exc:
                if exc.code != codes.MCP_SERVER_DIED or retried or not _convert.read_only(tool):
                    raise
                log.info("mcp_call_retried", session_id=session_id, server=conn.server.name, tool=tool.name)
                retried = True
            except Exception as exc:  # the server answered with a JSON-RPC error: the tool failed
                return _tool_failed(session_id, action, conn, exc, retried)
        return McpResult(id=new_id(), cause=action.id, session_id=session_id, server=conn.server.name, tool=tool.name,
                         content=[_convert.content(block) for block in result.content], is_error=bool(result.is_error),
                         structured_content=result.structured_content, retried=retried)


async def _listing(conn: ServerConnection, *, cached: bool = False) -> list[Any] | BridgeError:
    if cached and conn.tools is not None:
        return conn.tools
    if cached and (failed := conn.recent_failure()) is not None:
        return failed
    try:
        return await conn.list_tools()
    except BridgeError as exc:
        return exc


def _tool_failed(session_id: str, action: McpCall, conn: ServerConnection, exc: Exception, retried: bool) -> McpResult:
    from protocol import McpText

    return McpResult(id=new_id(), cause=action.id, session_id=session_id, server=conn.server.name, tool=action.tool,
                     content=[McpText(text=f"MCP error from {conn.server.name}: {exc}")], is_error=True, retried=retried)


def _no_server(name: str, conns: Mapping[str, ServerConnection]) -> str:
    known = ", ".join(conns) or "none"
    return f"this session has no MCP server {name!r} (its servers: {known})"


def _no_tool(action: McpCall, candidates: list[ServerConnection], failed: list[BridgeError]) -> str:
    if action.server:
        text = f"server {action.server!r} offers no tool {action.tool!r}"
    elif not candidates:
        text = (f"this session has no MCP servers, so no tool {action.tool!r} (give it some: spec field mcp, "
                "--mcp-config or CORRAL_MCP_CONFIG)")
    else:
        text = f"no MCP server of this session offers a tool {action.tool!r}"
    if failed:
        text += f" ({len(failed)} server(s) could not be asked: " + "; ".join(f.message[:300] for f in failed) + ")"
    return text + "; mcp_list shows the tools there are"


def _error(session_id: str, cause: str, code: str, message: str) -> Error:
    return Error(id=new_id(), cause=cause, session_id=session_id, code=code, message=message)
