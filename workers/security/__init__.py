"""Security analyzers, enforced by the worker before an action runs (see docs/security.md).

Every worker puts the ``security`` gate first in its sessions' gate chain. The gate runs the
session's analyzers (the deployment's, plus those the session's spec adds), takes the finding
its policy acts on most strongly, and allows the action, holds it for a ``confirm``
(``confirmation_required``), or blocks it (``rejected``). Shipped analyzers: ``rules`` (TOML
rules, shell-aware), ``invariant`` (Invariant guardrails, optional), ``llm`` (any
OpenAI-compatible endpoint); third parties' by the entry-point group ``corral.analyzers``.
"""

from ._analyzer import ANALYZERS, Analyzer, AnalyzerFactory, AnalyzerSetup
from ._config import LlmConfig, SecurityConfig, SecurityConfigError, load_security_config
from ._deployment import Security, default_security
from ._gate import SecurityGate
from ._invariant import InvariantAnalyzer
from ._llm import LlmAnalyzer
from ._policy import DEFAULT_POLICY, RISKS, Finding, Policy
from ._rules import DEFAULT_RULES_PATH, Facts, RuleSet, RulesAnalyzer, RulesError, facts_of, load_rules_file
from ._shell import ShellFacts, Simple, clear_cache, read_shell

__all__ = [
    "ANALYZERS", "Analyzer", "AnalyzerFactory", "AnalyzerSetup", "DEFAULT_POLICY", "DEFAULT_RULES_PATH", "Facts",
    "Finding", "InvariantAnalyzer", "LlmAnalyzer", "LlmConfig", "Policy", "RISKS", "RuleSet", "RulesAnalyzer",
    "RulesError", "Security", "SecurityConfig", "SecurityConfigError", "SecurityGate", "ShellFacts", "Simple",
    "clear_cache", "default_security", "facts_of", "load_rules_file", "load_security_config", "read_shell",
]
