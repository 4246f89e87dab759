"""The remote backend's configuration: executors you run yourself (``corral-executor --listen``),
listed inline or in a JSON or TOML file.

JSON: a list of executors (or ``{"executors": [...]}``); TOML: ``[[executors]]`` tables. Each is
``{"address": "tcp://HOST:PORT", "key_file": PATH, "ca_file": PATH?, "server_name": NAME?}``;
relative paths are relative to the file. TLS when ``ca_file`` is given (the executor's
certificate must be signed by that CA, for HOST or ``server_name``), plain TCP otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
import stat
import tomllib
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog

from ._base import BackendError

log = structlog.get_logger()


class RemoteExecutor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: str
    """``tcp://HOST:PORT`` where ``corral-executor --listen`` serves."""
    key_file: str
    """A file holding the executor's key (what it was started with ``--key-file``)."""
    ca_file: str | None = None
    """PEM of the CA that signed the executor's certificate: TLS, verified. None: plain TCP."""
    server_name: str | None = None
    """The name the certificate must carry, when it is not the address's host."""

    @property
    def host(self) -> str:
        return urlsplit(self.address).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.address).port or 0


class RemoteConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name", tag="remote"):
    executors_file: str | None = None
    """A JSON or TOML list of executors (``corral worker --backend remote --executors FILE``)."""
    executors: list[RemoteExecutor] = []
    """Executors given inline (in addition to the file's)."""
    health_timeout_s: float = 5.0
    """How long a health check (claiming, liveness) or a release may take before the executor counts as unreachable."""


def load_executors(config: RemoteConfig) -> tuple[RemoteExecutor, ...]:
    """Every executor the config names, checked: tcp:// addresses with a port, no address twice."""
    found = list(config.executors)
    if config.executors_file:
        found += _read_file(Path(config.executors_file))
    seen: set[tuple[str, int]] = set()
    for executor in found:
        parts = urlsplit(executor.address)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "tcp" or not parts.hostname or not port:
            raise BackendError(f"remote executor address {executor.address!r}: want tcp://HOST:PORT", "invalid_spec")
        if (parts.hostname, port) in seen:
            raise BackendError(f"remote executor {executor.address} is listed twice", "invalid_spec")
        seen.add((parts.hostname, port))
    if not found:
        raise BackendError("the remote backend has no executors: give --executors FILE (a JSON or TOML list of "
                           '{"address": "tcp://HOST:PORT", "key_file": PATH, "ca_file": PATH?})', "invalid_spec")
    return tuple(found)


def _read_file(path: Path) -> list[RemoteExecutor]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BackendError(f"cannot read the executors file {path}: {exc.strerror}", "invalid_spec") from None
    try:
        data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else msgspec.json.decode(raw)
        if isinstance(data, dict):
            data = data.get("executors", [])
        executors = msgspec.convert(data, list[RemoteExecutor])
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackendError(f"the executors file {path}: {exc}", "invalid_spec") from None
    here = path.parent

    def resolve(p: str | None) -> str | None:
        return str(here / os.path.expanduser(p)) if p is not None else None

    return [msgspec.structs.replace(e, key_file=resolve(e.key_file), ca_file=resolve(e.ca_file)) for e in executors]


def read_key(executor: RemoteExecutor) -> str:
    """The executor's key from its key file (a warning when other users can read it)."""
    try:
        mode = os.stat(executor.key_file).st_mode
        key = Path(executor.key_file).read_text().strip()
    except OSError as exc:
        raise BackendError(f"remote executor {executor.address}: cannot read its key file {executor.key_file}: "
                           f"{exc.strerror}", "invalid_spec") from None
    if not key:
        raise BackendError(f"remote executor {executor.address}: its key file {executor.key_file} is empty", "invalid_spec")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("remote_key_file_readable", key_file=executor.key_file, mode=oct(stat.S_IMODE(mode)))
    return key
