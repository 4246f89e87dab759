"""Risks, decisions and the policy between them; a session's policy may only tighten the deployment's.

Risks are ordered low < medium < high; ``unknown`` (an analyzer could not tell) is not on that
scale: the policy maps it like the others. Several findings are combined by what the policy
would do with each: the strongest decision wins (allow < confirm < block), and among equally
strong ones the more severe known risk.
"""

from __future__ import annotations

import msgspec

from protocol import Decision, Risk, SecurityPolicy

RISKS: tuple[Risk, ...] = ("low", "medium", "high", "unknown")
DECISIONS: tuple[Decision, ...] = ("allow", "confirm", "block")
_RISK_RANK = {"unknown": 0, "low": 1, "medium": 2, "high": 3}
_DECISION_RANK = {"allow": 0, "confirm": 1, "block": 2}


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """What one analyzer says of one action."""

    risk: Risk
    reason: str = ""
    analyzer: str = ""


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """A complete policy: a decision for every risk, and how long a held action waits."""

    low: Decision = "allow"
    medium: Decision = "allow"
    high: Decision = "confirm"
    unknown: Decision = "allow"
    confirm_timeout_s: float = 60.0

    def decide(self, risk: str) -> Decision:
        return getattr(self, risk) if risk in _RISK_RANK else self.unknown

    def worst(self, findings: list[Finding]) -> Finding:
        """The finding this policy would act on most strongly (see the module's docstring)."""
        best = findings[0]
        key = (_DECISION_RANK[self.decide(best.risk)], _RISK_RANK.get(best.risk, 0))
        for finding in findings[1:]:
            k = (_DECISION_RANK[self.decide(finding.risk)], _RISK_RANK.get(finding.risk, 0))
            if k > key:
                best, key = finding, k
        return best


DEFAULT_POLICY = Policy()
"""Low and medium allowed, high confirmed (60 s), unknown allowed: the issue's default."""


def deployment_policy(given: SecurityPolicy) -> Policy:
    """The deployment's policy: what its config sets over the default (any direction)."""
    fields = {name: value for name in (*RISKS, "confirm_timeout_s") if (value := getattr(given, name)) is not None}
    return msgspec.structs.replace(DEFAULT_POLICY, **fields)


def loosening(deployment: Policy, session: SecurityPolicy | None) -> str | None:
    """Why a session's policy is weaker than the deployment's (``invalid_spec``), or None."""
    if session is None:
        return None
    for risk in RISKS:
        asked = getattr(session, risk)
        if asked is not None and _DECISION_RANK[asked] < _DECISION_RANK[getattr(deployment, risk)]:
            return (f"security.policy.{risk}: {asked!r} is weaker than this deployment's {getattr(deployment, risk)!r}; "
                    "a session may only tighten the policy (allow < confirm < block)")
    timeout = session.confirm_timeout_s
    if timeout is not None and timeout > deployment.confirm_timeout_s:
        return (f"security.policy.confirm_timeout_s: {timeout:g} s is longer than this deployment's "
                f"{deployment.confirm_timeout_s:g} s; a session may only shorten it")
    return None


def tightened(deployment: Policy, session: SecurityPolicy | None) -> Policy:
    """The session's effective policy: for each risk the stronger decision of the two, the shorter
    timeout. (A session asking for less was refused at create; after a restart under a stricter
    deployment, the stricter one simply wins.)"""
    if session is None:
        return deployment
    fields: dict[str, object] = {}
    for risk in RISKS:
        asked = getattr(session, risk)
        if asked is not None and _DECISION_RANK[asked] > _DECISION_RANK[getattr(deployment, risk)]:
            fields[risk] = asked
    if session.confirm_timeout_s is not None and session.confirm_timeout_s < deployment.confirm_timeout_s:
        fields["confirm_timeout_s"] = session.confirm_timeout_s
    return msgspec.structs.replace(deployment, **fields) if fields else deployment
