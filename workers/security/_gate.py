"""The ``security`` gate: runs the session's analyzers on an action, takes the worst finding, and
maps it through the session's policy to allow, hold for a confirm, or deny."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from protocol import AnyAction, Confirm, SecuritySpec

from ..session import ALLOW, GATES, Deny, Gate, Hold, SessionContext, Verdict, summary_of
from ._analyzer import ANALYZERS, Analyzer, AnalyzerSetup
from ._deployment import Security, default_security
from ._policy import RISKS, Finding, Policy

log = structlog.get_logger()


class _Broken(Analyzer):
    """Stands in for an analyzer that could not be made: every finding says why."""

    def __init__(self, name: str, reason: str) -> None:
        self._name, self._reason = name, reason

    async def analyze(self, action: AnyAction, ctx: SessionContext) -> Finding:
        return Finding(risk="unknown", reason=self._reason, analyzer=self._name)


class SecurityGate(Gate):
    name = "security"

    def __init__(self, analyzers: list[tuple[str, Analyzer]], policy: Policy, timeout_s: float) -> None:
        self._analyzers = analyzers
        self.policy = policy
        self._timeout_s = timeout_s
        self._calls: dict[str, list[int]] = {name: [0, 0] for name, _ in analyzers}
        """Per analyzer: [actions analysed, nanoseconds spent]."""

    async def check(self, action: AnyAction, ctx: SessionContext) -> Verdict:
        if isinstance(action, Confirm) or not self._analyzers:  # confirms never reach the gates; be sure
            return ALLOW
        finding = self.policy.worst(await self.findings(action, ctx))
        decision = self.policy.decide(finding.risk)
        if decision == "allow":
            return ALLOW
        if decision == "block":
            return Deny(reason=finding.reason, risk=finding.risk, summary=summary_of(action), analyzer=finding.analyzer)
        return Hold(reason=finding.reason, timeout_s=self.policy.confirm_timeout_s, risk=finding.risk,
                    summary=summary_of(action), analyzer=finding.analyzer)

    async def findings(self, action: AnyAction, ctx: SessionContext) -> list[Finding]:
        """What every analyzer of the session says of ``action`` (run side by side)."""
        if len(self._analyzers) == 1:
            return [await self._run(*self._analyzers[0], action, ctx)]
        return list(await asyncio.gather(*(self._run(name, a, action, ctx) for name, a in self._analyzers)))

    async def _run(self, name: str, analyzer: Analyzer, action: AnyAction, ctx: SessionContext) -> Finding:
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self._timeout_s):
                finding = await analyzer.analyze(action, ctx)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            finding = Finding(risk="unknown", reason=f"the {name} analyzer did not answer within {self._timeout_s:g} s")
        except Exception as exc:  # a broken analyzer is a finding, never a lost action
            log.warning("analyzer_failed", analyzer=name, action_id=action.id, error=repr(exc))
            finding = Finding(risk="unknown", reason=f"the {name} analyzer failed: {exc!r}")
        finally:
            stats = self._calls[name]
            stats[0] += 1
            stats[1] += time.perf_counter_ns() - started
        if not isinstance(finding, Finding) or finding.risk not in RISKS:
            return Finding(risk="unknown", reason=f"the {name} analyzer answered {finding!r}, not a Finding", analyzer=name)
        return finding if finding.analyzer else Finding(risk=finding.risk, reason=finding.reason, analyzer=name)

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {name: {"actions": n, "mean_us": round(ns / n / 1000, 1) if n else None}
                for name, (n, ns) in self._calls.items()}

    async def aclose(self) -> None:
        for name, analyzer in self._analyzers:
            try:
                await analyzer.aclose()
            except Exception:
                log.exception("analyzer_close_failed", analyzer=name)


def build_gate(security: Security, ctx: SessionContext) -> SecurityGate:
    spec = ctx.spec.security
    policy = security.policy_for(spec)
    analyzers: list[tuple[str, Analyzer]] = []
    for name in security.analyzer_names(spec):
        try:
            setup = AnalyzerSetup(name=name, security=security, spec=spec or _EMPTY, policy=policy, session=ctx,
                                  options=security.config.options.get(name, {}))
            analyzers.append((name, ANALYZERS.get(name)(setup)))
        except Exception as exc:  # unknown after a restart, a bad session rule, a third party's bug
            log.warning("analyzer_unavailable", session_id=ctx.session_id, analyzer=name, error=repr(exc))
            analyzers.append((name, _Broken(name, f"the {name} analyzer could not be started: {exc}")))
    return SecurityGate(analyzers, policy, security.config.analyzer_timeout_s)


def _make_gate(ctx: SessionContext) -> SecurityGate:
    security = ctx.services.get("security")
    return (security if isinstance(security, Security) else default_security()).gate(ctx)


_EMPTY = SecuritySpec()
GATES.register("security", _make_gate)
