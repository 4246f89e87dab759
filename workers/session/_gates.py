"""Gates: a chain every action passes before its handler, which may allow, deny or hold it.

A held action waits in its lane (order holds) until a ``confirm`` naming it releases or rejects
it, or its wait runs out; other lanes go on, and a ``confirm`` itself never waits in a lane or
passes the gates. The chain takes the most severe verdict of its gates: deny, then hold, then
allow. corral ships no gate enabled; the security analyzers are gates. Adding one is a module and
a registry line::

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
from typing import Callable

import msgspec

from protocol import AnyAction, Registry, codes

from ._handlers import SessionContext


class Allow(msgspec.Struct, frozen=True, tag="allow"):
    pass


class Deny(msgspec.Struct, frozen=True, kw_only=True, tag="deny"):
    reason: str
    code: str = codes.ACTION_DENIED


class Hold(msgspec.Struct, frozen=True, kw_only=True, tag="hold"):
    reason: str
    timeout_s: float = 300.0


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
            verdict = await gate.check(action, ctx)
            if isinstance(verdict, Deny):
                return verdict, gate.name
            if isinstance(verdict, Hold) and not isinstance(worst[0], Hold):
                worst = (verdict, gate.name)
        return worst

    async def aclose(self) -> None:
        for gate in self._gates:
            await gate.aclose()
