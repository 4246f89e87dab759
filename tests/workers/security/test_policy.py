"""Risk to decision: the default policy, several findings combined, a session tightening, never loosening."""

from __future__ import annotations

from protocol import SecurityPolicy
from workers.security import DEFAULT_POLICY, Finding, Policy
from workers.security._policy import deployment_policy, loosening, tightened


def test_the_default_policy_confirms_high_and_allows_the_rest() -> None:
    assert [DEFAULT_POLICY.decide(r) for r in ("low", "medium", "high", "unknown")] == ["allow", "allow", "confirm", "allow"]
    assert DEFAULT_POLICY.confirm_timeout_s == 60


def test_the_finding_acted_on_most_strongly_wins() -> None:
    low, high, unknown = Finding(risk="low"), Finding(risk="high"), Finding(risk="unknown", reason="timed out")
    assert DEFAULT_POLICY.worst([low, unknown, high]) is high
    blocks_unknown = Policy(unknown="block")
    assert blocks_unknown.worst([high, unknown]) is unknown
    assert DEFAULT_POLICY.worst([unknown, Finding(risk="medium")]).risk == "medium"  # same decision: the known risk


def test_a_deployment_config_sets_any_decision() -> None:
    policy = deployment_policy(SecurityPolicy(high="allow", medium="confirm", confirm_timeout_s=5))
    assert (policy.high, policy.medium, policy.low, policy.confirm_timeout_s) == ("allow", "confirm", "allow", 5)


def test_a_session_may_tighten_but_not_loosen() -> None:
    assert loosening(DEFAULT_POLICY, SecurityPolicy(medium="confirm", high="block", confirm_timeout_s=10)) is None
    assert "weaker" in (loosening(DEFAULT_POLICY, SecurityPolicy(high="allow")) or "")
    assert "longer" in (loosening(DEFAULT_POLICY, SecurityPolicy(confirm_timeout_s=61)) or "")
    strict = tightened(DEFAULT_POLICY, SecurityPolicy(medium="confirm", low="allow", confirm_timeout_s=1))
    assert (strict.medium, strict.high, strict.confirm_timeout_s) == ("confirm", "confirm", 1)
    assert tightened(Policy(high="block"), SecurityPolicy(high="confirm")).high == "block"
