"""The typed messages of the executor channel besides actions and observations (those are the
protocol's): what a claim sends and what health and claim answer. JSON on the wire, so
``curl --unix-socket`` can read them."""

from __future__ import annotations

import msgspec


class Claim(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/claim: bind a warm, unclaimed executor to a session."""

    session_id: str
    env: dict[str, str] = {}
    workdir: str | None = None
    default_timeout_s: float | None = None
    default_soft_timeout_s: float | None = None
    plugins: list[str] = []
    """In-sandbox plugins beyond the core (shell, files, editor), each started on first use."""


class Release(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/release: end this session and wait unclaimed for the next (a remote executor)."""

    session_id: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """GET /v1/health, and the answer to a claim."""

    ok: bool = True
    session_id: str = ""
    """Empty while unclaimed (waiting in a warm pool)."""
    pid: int = 0
    """The executor's pid in the sandbox's own pid namespace."""
    started_at: float = 0.0
    workdir: str = ""
    """Where the session's shells started (empty while unclaimed)."""


class VscodeServer(msgspec.Struct, frozen=True, kw_only=True):
    """POST /v1/vscode: where the session's code-server listens (the sandbox's loopback) and the
    folder it opened."""

    port: int
    workdir: str
