"""The ``invariant`` analyzer: the Invariant guardrails engine (``invariant-ai`` on PyPI), offline.

Each action becomes a one-message trace, an assistant message with one tool call named after the
action's kind whose arguments are the action's fields; the policy file's ``raise`` rules that
fire are the findings (risk from the rule's ``risk=`` keyword, else ``high``). The engine is
imported, and the policy parsed, in a thread on first use (~1 s of imports that must not stall
the event loop), then shared by every session of the worker. An engine or policy that fails
gives ``unknown`` with the reason. Needs ``pip install 'corral[invariant]'``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from typing import Any

import msgspec

from protocol import AnyAction

from ..session import SessionContext
from ._analyzer import ANALYZERS, Analyzer, AnalyzerSetup
from ._policy import RISKS, Finding

DEFAULT_POLICY_PATH = os.path.join(os.path.dirname(__file__), "default_policy.iv")
_loaded: dict[tuple[str, int], Any] = {}
"""Parsed policies by (path, mtime): one per file and version, shared by all sessions."""


def policy_path(security: Any) -> str:
    return security.config.invariant_policy or DEFAULT_POLICY_PATH


def _load(path: str, mtime: int) -> Any:
    analyzer = importlib.import_module("invariant.analyzer")
    policy = analyzer.LocalPolicy.from_file(path)
    _loaded[(path, mtime)] = policy
    return policy


def trace_of(action: AnyAction) -> list[dict[str, Any]]:
    arguments = msgspec.to_builtins(action)
    kind = arguments.pop("kind")
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"id": action.id or "action", "type": "function",
                             "function": {"name": kind, "arguments": arguments}}]}]


class InvariantAnalyzer(Analyzer):
    name = "invariant"

    def __init__(self, setup: AnalyzerSetup) -> None:
        super().__init__(setup)
        self._path = policy_path(setup.security)

    @classmethod
    def unavailable(cls, security: Any) -> str | None:
        if importlib.util.find_spec("invariant") is None:
            return "the invariant-ai package is not installed on the worker (pip install 'corral[invariant]')"
        path = policy_path(security)
        if not os.path.isfile(path):
            return f"its policy file {path} does not exist (invariant_policy in the security config)"
        return None

    async def _policy(self) -> Any:
        mtime = os.stat(self._path).st_mtime_ns
        policy = _loaded.get((self._path, mtime))
        if policy is None:
            policy = await asyncio.to_thread(_load, self._path, mtime)
        return policy

    async def analyze(self, action: AnyAction, ctx: SessionContext) -> Finding:
        try:
            policy = await self._policy()
            result = await policy.a_analyze(trace_of(action))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the engine's errors are its own types: translated here, at the edge
            return Finding(risk="unknown", reason=f"the Invariant engine failed: {type(exc).__name__}: {str(exc)[:200]}")
        findings = []
        for error in result.errors:
            risk = str(error.kwargs.get("risk", "high"))
            reason = " ".join(str(a) for a in error.args) or "an Invariant rule fired"
            findings.append(Finding(risk=risk if risk in RISKS else "unknown", reason=reason))  # type: ignore[arg-type]
        if not findings:
            return Finding(risk="low", reason="no Invariant rule fired")
        return self.setup.policy.worst(findings)


ANALYZERS.register("invariant", InvariantAnalyzer)
