"""A deployment's security settings (``WorkerConfig.security``), from a TOML or JSON file.

    # corral worker --security-config security.toml
    analyzers = ["rules", "llm"]
    rules_files = ["site-rules.toml"]          # relative to this file
    [policy]
    medium = "confirm"
    confirm_timeout_s = 120
    [llm]
    url = "http://127.0.0.1:8000"               # POSTs <url>/v1/chat/completions
    model = "qwen2.5-7b-instruct"
    api_key_env = "LLM_API_KEY"
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

import msgspec

from protocol import SecurityPolicy, SecurityRule


class SecurityConfigError(ValueError):
    """A security config that cannot be used; the message says what and where."""


class LlmConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``llm`` analyzer's endpoint: any OpenAI-compatible chat-completions server."""

    url: str = ""
    """Base URL (``http://host:port``, ``/v1/chat/completions`` is added) or the full endpoint URL."""
    model: str = ""
    api_key_env: str = ""
    """The name of the environment variable (of the worker) holding the API key; empty: no key."""
    timeout_s: float = 10.0
    """Past this the finding is ``unknown`` (the policy decides what that means)."""
    max_tokens: int = 200
    json_mode: bool = False
    """Send ``response_format: {"type": "json_object"}`` (servers that support it answer cleaner JSON)."""
    max_action_chars: int = 4000
    """How much of the action (a command, a file's content) the model is shown."""


class SecurityConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The deployment's analyzers, rules and policy; sessions may only add to them and tighten them."""

    enabled: bool = True
    """The ``security`` gate on every action of every session (``--no-security`` turns it off)."""
    policy: SecurityPolicy = SecurityPolicy()
    """Unset keys keep the default: low/medium allow, high confirm, unknown allow, 60 s to confirm."""
    analyzers: list[str] = msgspec.field(default_factory=lambda: ["rules"])
    """Analyzers (registry ``corral.analyzers``) run on every action: ``rules``, ``invariant``, ``llm``, third parties'."""
    default_rules: bool = True
    """Load the shipped ``default_rules.toml`` (docs/security.md lists them)."""
    rules_files: list[str] = []
    """More TOML rules files (``[[rules]]`` tables)."""
    rules: list[SecurityRule] = []
    """Inline rules, in addition to the files."""
    llm: LlmConfig = LlmConfig()
    invariant_policy: str = ""
    """The Invariant guardrails policy file (``.iv``) of the ``invariant`` analyzer; empty: the shipped one."""
    analyzer_timeout_s: float = 30.0
    """An analyzer that has not answered in this long gives ``unknown``."""
    # Third-party analyzers' own settings by analyzer name: their format, not ours.
    options: dict[str, dict[str, Any]] = {}


def load_security_config(path: str) -> SecurityConfig:
    """``path`` as a ``SecurityConfig`` (``.json``: JSON, else TOML); relative file names in it are
    taken from the file's directory. Any problem is a ``SecurityConfigError`` naming the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read security config {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"security config {path} is not {'JSON' if path.endswith('.json') else 'TOML'}: {exc}") from None
    try:
        config = msgspec.convert(data, SecurityConfig)
    except msgspec.ValidationError as exc:
        raise SecurityConfigError(f"security config {path}: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    return msgspec.structs.replace(
        config,
        rules_files=[os.path.join(base, p) for p in config.rules_files],
        invariant_policy=os.path.join(base, config.invariant_policy) if config.invariant_policy else "",
    )
