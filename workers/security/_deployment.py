"""A deployment's security, made once per worker: its config, policy and compiled rules, the checks
of a session's ``security`` at create, and what its sessions' analyzers share (an HTTP session)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import aiohttp
import structlog

from protocol import SecuritySpec, UnknownName

from ..session import SessionContext
from ._analyzer import ANALYZERS, unavailable
from ._config import SecurityConfig, SecurityConfigError
from ._policy import Policy, deployment_policy, loosening, tightened
from ._rules import DEFAULT_RULES_PATH, RuleSet, RulesError, compile_rules, load_rules_file

if TYPE_CHECKING:
    from ._gate import SecurityGate

log = structlog.get_logger()

MAX_TIMEOUT_S = 30 * 24 * 3600.0
"""The longest confirm timeout (the protocol's bound on every timeout)."""


class Security:
    """Raises ``SecurityConfigError`` for a config it cannot enforce (a bad rule, an unknown or
    unavailable analyzer): a worker with a broken security config does not start."""

    def __init__(self, config: SecurityConfig = SecurityConfig()) -> None:
        self.config = config
        self.policy: Policy = deployment_policy(config.policy)
        timeout = self.policy.confirm_timeout_s
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
            raise SecurityConfigError(f"policy.confirm_timeout_s must be above 0 and at most {MAX_TIMEOUT_S:.0f}, got {timeout!r}")
        if not (math.isfinite(config.analyzer_timeout_s) and config.analyzer_timeout_s > 0):
            raise SecurityConfigError(f"analyzer_timeout_s must be above 0, got {config.analyzer_timeout_s!r}")
        try:
            rules = load_rules_file(DEFAULT_RULES_PATH) if config.default_rules else []
            for path in config.rules_files:
                rules += load_rules_file(path)
            rules += compile_rules(config.rules, "the security config's rules")
        except RulesError as exc:
            raise SecurityConfigError(str(exc)) from None
        self.rules = RuleSet(rules)
        for name in config.analyzers:
            if problem := self.analyzer_problem(name):
                raise SecurityConfigError(f"analyzer {name!r}: {problem}")
        self._http: aiohttp.ClientSession | None = None

    def analyzer_problem(self, name: str) -> str | None:
        try:
            factory = ANALYZERS.get(name)
        except UnknownName as exc:
            return str(exc)
        try:
            return unavailable(factory, self)
        except Exception as exc:  # a third party's check is not trusted to work
            return f"its availability check failed: {exc!r}"

    def spec_problem(self, spec: SecuritySpec | None) -> str | None:
        """Why a session's ``security`` cannot be had here (``invalid_spec``): a weaker policy, a
        rule that does not compile, an analyzer that is unknown or unavailable."""
        if spec is None:
            return None
        if problem := loosening(self.policy, spec.policy):
            return problem
        try:
            compile_rules(spec.rules, "security")
        except RulesError as exc:
            return str(exc)
        for name in spec.analyzers or ():
            if name not in self.config.analyzers and (problem := self.analyzer_problem(name)):
                return f"security.analyzers: {name!r}: {problem}"
        return None

    def analyzer_names(self, spec: SecuritySpec | None) -> list[str]:
        """The deployment's analyzers, then the session's others (``rules`` whenever it has rules)."""
        names = list(self.config.analyzers)
        extra = list(spec.analyzers or ()) if spec else []
        if spec and spec.rules:
            extra.append("rules")
        return names + [n for n in dict.fromkeys(extra) if n not in names]

    def policy_for(self, spec: SecuritySpec | None) -> Policy:
        return tightened(self.policy, spec.policy if spec else None)

    def gate(self, ctx: SessionContext) -> SecurityGate:
        from ._gate import build_gate

        return build_gate(self, ctx)

    def http(self) -> aiohttp.ClientSession:
        """One HTTP client session for every analyzer that calls out (connections kept alive)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


_default: Security | None = None


def default_security() -> Security:
    """The security of a runner no worker gave one (the default config), made once."""
    global _default
    if _default is None:
        _default = Security()
    return _default
