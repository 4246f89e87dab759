"""What MCP servers a session has: ``MCPConfig``, where it comes from, and how the sources merge.

Three sources, merged in this order: the worker's config file (``--mcp-config FILE``, TOML or
JSON), the environment (``CORRAL_MCP_CONFIG``: a path, or inline JSON), and the session spec
(``mcp: {...}``). All have the same shape::

    {"stdio_servers": [{"name": "git", "command": "mcp-server-git", "args": ["--repository", "."]}],
     "sse_servers": [{"name": "docs", "url": "http://127.0.0.1:8000/sse", "api_key": "..."}],
     "shttp_servers": [{"name": "search", "url": "http://127.0.0.1:9000/mcp", "timeout_s": 30}]}

Server names are unique across every kind and source; a clash, an unknown key or a bad type is a
``McpConfigError`` naming the field (``invalid_spec`` at create time). Nothing here imports the
MCP SDK: workers validate specs without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import tomllib
from typing import Any, Mapping

import msgspec

ENV_VAR = "CORRAL_MCP_CONFIG"
DEFAULT_TIMEOUT_S = 60.0
"""A call's limit when neither the action (``timeout_s``) nor the server's config gives one."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class McpConfigError(ValueError):
    """A config that cannot be used; the message names the field (``mcp.stdio_servers[0].name``)."""


class StdioServer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A server the executor starts inside the sandbox, spoken to over its stdin/stdout."""

    name: str
    command: str
    args: list[str] = []
    env: dict[str, str] = {}


class SseServer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A network server speaking MCP's (older) HTTP+SSE transport, reached from the worker."""

    name: str
    url: str
    api_key: str | None = None
    """Sent as ``Authorization: Bearer <api_key>``."""


class ShttpServer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A network server speaking streamable HTTP, reached from the worker."""

    name: str
    url: str
    api_key: str | None = None
    """Sent as ``Authorization: Bearer <api_key>``."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Default limit of one call (an action's own ``timeout_s`` wins)."""


AnyServer = StdioServer | SseServer | ShttpServer


class MCPConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stdio_servers: list[StdioServer] = []
    sse_servers: list[SseServer] = []
    shttp_servers: list[ShttpServer] = []

    def servers(self) -> list[AnyServer]:
        """Every server, in config order (stdio, then SSE, then streamable HTTP)."""
        return [*self.stdio_servers, *self.sse_servers, *self.shttp_servers]

    def __bool__(self) -> bool:
        return bool(self.stdio_servers or self.sse_servers or self.shttp_servers)


def parse(raw: Mapping[str, Any], where: str = "mcp") -> MCPConfig:
    """A config from decoded JSON/TOML, checked: types, unknown keys, names, URLs."""
    try:
        config = msgspec.convert(raw, MCPConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise McpConfigError(f"{where}: {_field_message(exc, where)}") from None
    for kind in ("stdio_servers", "sse_servers", "shttp_servers"):
        for i, server in enumerate(getattr(config, kind)):
            field = f"{where}.{kind}[{i}]"
            if not _NAME.fullmatch(server.name):
                raise McpConfigError(f"{field}.name: {server.name!r} is not a server name (letters, digits, "
                                     "'_', '.', '-'; at most 64)")
            if isinstance(server, StdioServer) and not server.command:
                raise McpConfigError(f"{field}.command: must name a program")
            if isinstance(server, (SseServer, ShttpServer)) and not server.url.startswith(("http://", "https://")):
                raise McpConfigError(f"{field}.url: must be an http:// or https:// URL, got {server.url[:80]!r}")
            if isinstance(server, ShttpServer) and not 0 < server.timeout_s <= 86400:
                raise McpConfigError(f"{field}.timeout_s: must be above 0 and at most 86400, got {server.timeout_s!r}")
    return config


def _field_message(exc: msgspec.ValidationError, where: str) -> str:
    """msgspec says ``... - at `$.stdio_servers[0]```; name the field as the user wrote it."""
    text = str(exc)
    return text.replace("`$.", f"`{where}.").replace("`$`", f"`{where}`")


def merge(*sources: tuple[str, MCPConfig]) -> MCPConfig:
    """The sources' servers in order; a name defined twice is an error naming both places."""
    seen: dict[str, str] = {}
    merged: dict[str, list[Any]] = {"stdio_servers": [], "sse_servers": [], "shttp_servers": []}
    for where, config in sources:
        for kind, servers in merged.items():
            for i, server in enumerate(getattr(config, kind)):
                field = f"{where}.{kind}[{i}].name"
                if server.name in seen:
                    raise McpConfigError(f"{field}: server {server.name!r} is already defined by {seen[server.name]}")
                seen[server.name] = field
                servers.append(server)
    return MCPConfig(**merged)


def load_file(path: str) -> MCPConfig:
    """A config file: TOML (``*.toml``) or JSON."""
    text = Path(path).read_text()
    try:
        raw = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise McpConfigError(f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None
    return parse(raw, where=path)


def load_env(environ: Mapping[str, str] = os.environ) -> MCPConfig:
    """``CORRAL_MCP_CONFIG``: inline JSON (starts with ``{``) or a path to a file."""
    value = environ.get(ENV_VAR, "").strip()
    if not value:
        return MCPConfig()
    if not value.startswith("{"):
        return load_file(value)
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{ENV_VAR}: not valid JSON: {exc}") from None
    return parse(raw, where=ENV_VAR)


def host_config(path: str | None, environ: Mapping[str, str] = os.environ) -> MCPConfig:
    """What a worker starts with: its file, then the environment (merged, checked)."""
    sources = [(path, load_file(path))] if path else []
    return merge(*sources, (ENV_VAR, load_env(environ)))


def session_config(host: MCPConfig, spec_mcp: Mapping[str, Any]) -> MCPConfig:
    """The servers of one session: the worker's, then the spec's ``mcp``."""
    if not spec_mcp:
        return host
    return merge(("the worker's MCP config", host), ("mcp", parse(spec_mcp)))
