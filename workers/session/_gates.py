"""Gates: a chain every action passes before its handler, which may allow, deny or hold it.

A held action waits in its lane (order holds) until a ``confirm`` naming it releases or rejects
it, or its wait runs out; other lanes go on, and a ``confirm`` itself never waits in a lane or
passes the gates. The runner publishes ``confirmation_required`` for a hold and answers a denied,
rejected or timed-out action with ``rejected``. The chain takes the most severe verdict of its
gates: deny, then hold, then allow; a gate that raises denies (fail closed). The security
analyzers (``workers.security``) are one gate, ``security``, which every worker enables. Adding a
gate is a module and a registry line::

    class NoSudo(Gate):
        name = "no-sudo"
        async def check(self, action, ctx):
            if isinstance(action, CmdRun) and "sudo" in action.command:
                return Hold(reason="sudo needs a person", timeout_s=300)
            return ALLOW

    GATES.register("no-sudo", lambda ctx: NoSudo())
"""

from __future__ import annotations

import abc
import asyncio
from typing import Callable

import msgspec
import structlog

from protocol import (
    AnyAction,
    BrowseInteractive,
    BrowseUrl,
    CmdRun,
    Confirm,
    FileEdit,
    FileRead,
    FileWrite,
    IPythonRun,
    McpCall,
    McpList,
    Registry,
    Risk,
    codes,
)

from ._handlers import SessionContext


class Allow(msgspec.Struct, frozen=True, tag="allow"):
    pass


log = structlog.get_logger()


class Deny(msgspec.Struct, frozen=True, kw_only=True, tag="deny"):
    reason: str
    code: str = codes.ACTION_DENIED
    risk: Risk = "unknown"
    summary: str = ""
    """The action in one line; empty: the runner makes one (``summary_of``)."""
    analyzer: str = ""
    """Who found it; empty: the gate's name."""


class Hold(msgspec.Struct, frozen=True, kw_only=True, tag="hold"):
    reason: str
    timeout_s: float = 300.0
    risk: Risk = "unknown"
    summary: str = ""
    analyzer: str = ""


Verdict = Allow | Deny | Hold
ALLOW = Allow()


class Gate(abc.ABC):
    name: str = "gate"

    @abc.abstractmethod
    async def check(self, action: AnyAction, ctx: SessionContext) -> Verdict:
        """Decide before the action runs; must not block the loop."""

    async def aclose(self) -> None:
        pass


GateFactory = Callable[[SessionContext], "Gate | None"]
GATES: Registry[GateFactory] = Registry("corral.gates")


class GateChain:
    def __init__(self, gates: list[Gate]) -> None:
        self._gates = gates

    @classmethod
    def build(cls, names: list[str], ctx: SessionContext) -> GateChain:
        return cls([gate for name in names if (gate := GATES.get(name)(ctx)) is not None])

    def __bool__(self) -> bool:
        return bool(self._gates)

    async def check(self, action: AnyAction, ctx: SessionContext) -> tuple[Verdict, str]:
        """The most severe verdict of all gates, and the name of the gate that gave it."""
        worst: tuple[Verdict, str] = (ALLOW, "")
        for gate in self._gates:
            try:
                verdict = await gate.check(action, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # fail closed: an action no gate could judge does not run
                log.exception("gate_failed", gate=gate.name, action_id=action.id)
                return Deny(reason=f"the {gate.name} gate failed: {exc!r}", summary=summary_of(action)), gate.name
            if isinstance(verdict, Deny):
                return verdict, gate.name
            if isinstance(verdict, Hold) and not isinstance(worst[0], Hold):
                worst = (verdict, gate.name)
        return worst

    async def aclose(self) -> None:
        for gate in self._gates:
            await gate.aclose()


SUMMARY_CHARS = 200


def summary_of(action: AnyAction, limit: int = SUMMARY_CHARS) -> str:
    """The action in one line for the person asked to confirm it: the command, path or URL."""
    match action:
        case CmdRun():
            text = action.command
        case FileRead() | FileWrite():
            text = action.path
        case FileEdit():
            text = f"{action.command} {action.path}"
        case IPythonRun():
            text = action.code
        case BrowseUrl():
            text = action.url
        case BrowseInteractive():
            text = action.browser_actions
        case McpCall():
            text = f"{action.server + '.' if action.server else ''}{action.tool}({msgspec.json.encode(action.arguments).decode()})"
        case McpList():
            text = f"list the tools of {action.server or 'every server'}"
        case Confirm():
            text = f"confirm {action.action_id}"
        case _:
            text = action.__struct_config__.tag
    line = " ⏎ ".join(part.strip() for part in text.strip().splitlines()) or text
    return line if len(line) <= limit else line[: limit - 1] + "…"
