"""Handlers: what answers an action of each kind, for one session.

A session runner routes every action by its kind to the one handler that declared it. A handler
opens with the session, answers actions (streaming chunks through ``emit``), names the lane an
action runs in (order holds within a lane; lanes run side by side), and closes with the session.
The executor channel is one handler (shell, files, editor); MCP and the plugins add their own.

Adding one is a module and a registry line::

    class EchoHandler(Handler):
        kinds = frozenset({"echo"})
        async def handle(self, action, emit):
            return ...

    HANDLERS.register("echo", lambda ctx: EchoHandler())
"""

from __future__ import annotations

import abc
import asyncio
import time
from typing import Any, Awaitable, Callable, ClassVar

import msgspec

from actors.secrets import Masker
from executor.client import ExecutorClient, ExecutorUnavailable
from executor.plugins import PLUGINS, plugin_for_kind, resolve
from protocol import (
    AnyAction,
    AnyObservation,
    CmdChunk,
    CmdRun,
    Error,
    IPythonOutput,
    PluginStatus,
    Registry,
    SessionSpec,
    codes,
    new_id,
)

from ..backends import SandboxHandle

Emit = Callable[[CmdChunk], Awaitable[None]]
DeathReason = Callable[[], Awaitable[str | None]]
ReportPlugins = Callable[[list[PluginStatus]], Awaitable[None]]
DEATH_REASON_WAIT_S = 2.0


class SandboxDied(Exception):
    """The sandbox is gone: this action gets ``sandbox_died``, every later one ``sandbox_lost``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler or gate may know of its session."""

    session_id: str
    spec: SessionSpec
    handle: SandboxHandle
    client: ExecutorClient
    death_reason: DeathReason | None = None
    report_plugins: ReportPlugins | None = None
    """Publish the session's plugin states (``session_info.plugins``) when one changes."""
    services: dict[str, Any] = {}
    """What the worker shares with its sessions' handlers, by name (``mcp``: the MCP bridge)."""
    masker: Masker | None = None
    """Replaces the session's secrets by ``[secret:NAME]`` (None: the session has none). The runner
    masks whatever it publishes; a handler or gate that publishes or logs on its own uses this."""


class Handler(abc.ABC):
    """Answers the actions of ``kinds`` for one session."""

    kinds: ClassVar[frozenset[str]] = frozenset()

    def lane(self, action: AnyAction) -> str:
        """The lane ``action`` runs in: one action at a time per lane, in publish order."""
        return "main"

    async def open(self) -> None:
        """Called once before the first action (e.g. connect, start a process)."""

    @abc.abstractmethod
    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        """The action's final observation; chunks go through ``emit`` first. Raise ``SandboxDied``
        when the sandbox is gone; any other exception is answered ``internal``."""

    async def aclose(self) -> None:
        """Called once when the session closes."""


HandlerFactory = Callable[[SessionContext], "Handler | None"]
HANDLERS: Registry[HandlerFactory] = Registry("corral.handlers")
"""name -> factory; a factory returns None when its handler has nothing to do in a session."""


def route_table(names: list[str], ctx: SessionContext) -> dict[str, Handler]:
    """kind -> handler for a session, from the named handler factories; a kind claimed twice is a bug."""
    table: dict[str, Handler] = {}
    for name in names:
        handler = HANDLERS.get(name)(ctx)
        if handler is None:
            continue
        for kind in handler.kinds:
            if kind in table:
                raise ValueError(f"handlers {type(table[kind]).__name__} and {type(handler).__name__} both claim {kind!r}")
            table[kind] = handler
    return table


class ExecutorHandler(Handler):
    """Shell, files, editor and the in-sandbox plugins: answered by the executor inside the
    sandbox, over its channel. A plugin's kind in a session that did not ask for the plugin is
    ``plugin_not_enabled``, from here; a plugin's actions run in the plugin's own lanes."""

    kinds = frozenset({"cmd_run", "file_read", "file_write", "file_edit"}) | frozenset(
        kind for name in PLUGINS.names() for kind in PLUGINS.get(name).kinds)

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self._plugins = {name: PluginStatus(name=name) for name in resolve(ctx.spec.plugins)}

    @classmethod
    def statuses(cls, spec: SessionSpec) -> list[PluginStatus]:
        """What a new session reports of its plugins: each declared, none started."""
        return [PluginStatus(name=name) for name in resolve(spec.plugins)]

    def lane(self, action: AnyAction) -> str:
        if isinstance(action, CmdRun):
            return action.shell
        name = plugin_for_kind(action.__struct_config__.tag)
        return (PLUGINS.get(name).lane_for(action) if name else None) or "main"

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        plugin = plugin_for_kind(action.__struct_config__.tag)
        if plugin is None:
            return await self._execute(action, emit)
        if plugin not in self._plugins:
            kind = action.__struct_config__.tag
            return self._error(action, codes.PLUGIN_NOT_ENABLED, (
                f"{kind} is served by the plugin {plugin!r}, which this session did not ask for; create "
                f"the session with it: spec field plugins: [{plugin!r}] (SDK: create_session(plugins=[{plugin!r}]))"))
        if self._plugins[plugin].state != "ready":
            await self._set_plugin(PluginStatus(name=plugin, state="starting"))
        final = await self._execute(action, emit)
        await self._set_plugin(_plugin_status(plugin, final))
        return final

    async def _set_plugin(self, status: PluginStatus) -> None:
        if self._plugins.get(status.name) == status:
            return
        self._plugins[status.name] = status
        if self._ctx.report_plugins is not None:
            await self._ctx.report_plugins(list(self._plugins.values()))

    async def _execute(self, action: AnyAction, emit: Emit) -> AnyObservation:
        final: AnyObservation | None = None
        try:
            async for obs in self._client.execute(action):
                if isinstance(obs, CmdChunk):
                    await emit(obs)
                else:
                    final = obs
        except ExecutorUnavailable as exc:
            return await self._unavailable(action, exc)
        if final is None:
            return self._error(action, codes.SANDBOX_FAILED, "the executor ended its answer without a final observation")
        return final

    async def _unavailable(self, action: AnyAction, exc: ExecutorUnavailable) -> Error:
        """The channel broke: a sandbox that still answers its health check failed this action
        only (``sandbox_failed``); one that does not is dead, for the reason its backend gives."""
        try:
            await self._client.health()
            return self._error(action, codes.SANDBOX_FAILED, f"the sandbox's executor did not answer: {exc}")
        except ExecutorUnavailable as health:
            raise SandboxDied(await self._backend_reason() or str(health)) from exc

    async def _backend_reason(self) -> str | None:
        """Why the backend says the sandbox is gone (OOMKilled, exit code...), given it a moment to notice."""
        if self._ctx.death_reason is None:
            return None
        deadline = time.monotonic() + DEATH_REASON_WAIT_S
        while True:
            reason = await self._ctx.death_reason()
            if reason is not None or time.monotonic() > deadline:
                return reason
            await asyncio.sleep(0.1)

    def _error(self, action: AnyAction, code: str, message: str) -> Error:
        return Error(id=new_id(), cause=action.id, session_id=self._ctx.session_id, code=code, message=message)

    async def aclose(self) -> None:
        await self._client.aclose()


def _plugin_status(name: str, answer: AnyObservation) -> PluginStatus:
    """Where a plugin stands after answering: an answer that says it could not serve marks it failed."""
    if isinstance(answer, Error) and answer.code in (codes.PLUGIN_UNAVAILABLE, codes.SANDBOX_FAILED):
        return PluginStatus(name=name, state="failed", reason=answer.message)
    if isinstance(answer, IPythonOutput) and answer.status == "failed":
        return PluginStatus(name=name, state="failed", reason=answer.reason)
    return PluginStatus(name=name, state="ready")


HANDLERS.register("executor", ExecutorHandler)
DEFAULT_HANDLERS = ["executor", "mcp"]
"""``mcp`` serves only where the worker shares an MCP bridge (``SessionContext.services``)."""
