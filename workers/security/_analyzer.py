"""The analyzer interface and its registry (entry-point group ``corral.analyzers``).

An analyzer says how risky one action is, before it runs. It is made once per session from an
``AnalyzerSetup`` and asked about every action of the session except ``confirm``; it must not
block the event loop (do I/O with asyncio, CPU work of more than ~1 ms in a thread). Whatever it
raises, or a ``Finding`` it fails to return in time, becomes ``unknown`` with the reason: a
broken analyzer never loses an action its answer. A third-party analyzer::

    class NoFridays(Analyzer):
        name = "no-fridays"
        async def analyze(self, action, ctx):
            if time.localtime().tm_wday == 4:
                return Finding(risk="high", reason="no deploys on Fridays")
            return Finding(risk="low")

and in its distribution's metadata ``[project.entry-points."corral.analyzers"] no-fridays =
"mypkg:NoFridays"``; sessions ask for it with ``"security": {"analyzers": ["no-fridays"]}``, a
deployment with ``analyzers = ["rules", "no-fridays"]`` in its security config.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import msgspec

from protocol import AnyAction, Registry, SecuritySpec

from ..session import SessionContext
from ._policy import Finding, Policy

if TYPE_CHECKING:
    from ._deployment import Security


class AnalyzerSetup(msgspec.Struct, frozen=True, kw_only=True):
    """What an analyzer is made from, once per session."""

    name: str
    """The name it was asked for by (its registry key)."""
    security: Security
    """The deployment's security: its config (``security.config``), policy, compiled rules, shared HTTP session."""
    spec: SecuritySpec
    """The session's additions (its rules, analyzers, policy); empty when it asked for none."""
    policy: Policy
    """The session's effective policy (the deployment's, tightened by the session)."""
    session: SessionContext
    # The analyzer's own settings from the deployment's config (``[options.<name>]``): its own format.
    options: dict[str, Any] = {}


class Analyzer(abc.ABC):
    name: ClassVar[str] = "analyzer"

    def __init__(self, setup: AnalyzerSetup) -> None:
        self.setup = setup

    @classmethod
    def unavailable(cls, security: Security) -> str | None:
        """Why this analyzer cannot run in this deployment (a missing package or setting), or None.
        Asked when a worker starts (for its own analyzers) and at create (for a session's)."""
        return None

    @abc.abstractmethod
    async def analyze(self, action: AnyAction, ctx: SessionContext) -> Finding:
        """The risk of ``action``; must not block the loop."""

    async def aclose(self) -> None:
        pass


AnalyzerFactory = Callable[[AnalyzerSetup], Analyzer]
"""An ``Analyzer`` subclass, or any callable that makes one (it may have an ``unavailable`` too)."""
ANALYZERS: Registry[AnalyzerFactory] = Registry("corral.analyzers")


def unavailable(factory: AnalyzerFactory, security: Security) -> str | None:
    check = getattr(factory, "unavailable", None)
    return check(security) if callable(check) else None
