"""What a well-typed action must also satisfy before anything acts on it.

msgspec checks types; this checks meaning: ids safe to put in a URL, a file name or a log line,
timeouts that are finite and positive, paths without NUL bytes, line numbers that fit a machine
integer. Every decoder of ours runs it, so a worker, an executor and a controller all agree on
what an acceptable action is, and each violation has its stable code.
"""

from __future__ import annotations

import math
import re
from typing import assert_never

from . import _errors as codes
from ._events import (
    AnyAction,
    BrowseInteractive,
    BrowseUrl,
    CmdRun,
    Confirm,
    FileEdit,
    FileRead,
    FileWrite,
    IPythonRun,
    McpCall,
    McpList,
    SessionSpec,
)

MAX_ID_LENGTH = 256
ID_CHARS = "printable ASCII except space and '/'"
_ID = re.compile(r"[!-.0-~]{1,%d}" % MAX_ID_LENGTH)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_TIMEOUT_S = 30 * 24 * 3600.0
MAX_LINE = 2**31 - 1
MAX_PATH_BYTES = 4096


class Invalid(Exception):
    """One reason an action or a spec is not acceptable, with its wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def valid_id(value: object) -> bool:
    """An action id: 1-256 characters of printable ASCII, no space, no '/'."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: str, field: str = "id") -> None:
    if not valid_id(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise Invalid(codes.BAD_PAYLOAD, f"{field} {shown!r} is not a valid action id: 1 to {MAX_ID_LENGTH} "
                                         f"characters of {ID_CHARS}")


def _argument(message: str) -> Invalid:
    return Invalid(codes.INVALID_ARGUMENT, message)


def _timeout(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise _argument(f"{name} must be a finite number of seconds above 0 and at most {MAX_TIMEOUT_S:.0f}, got {value!r}")


def _path(name: str, value: str | None) -> None:
    if value is None:
        return
    if not value:
        raise _argument(f"{name} is empty")
    if "\x00" in value:
        raise _argument(f"{name} contains a NUL byte")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _argument(f"{name} is longer than {MAX_PATH_BYTES} bytes")


def _line(name: str, value: int | None, low: int) -> None:
    if value is not None and not low <= value <= MAX_LINE:
        raise _argument(f"{name} must be between {low} and {MAX_LINE}, got {value}")


def _name(name: str, value: str | None) -> None:
    if value is not None and not _NAME.fullmatch(value):
        raise _argument(f"{name} {value[:70]!r} must be 1 to 64 characters of letters, digits, '_', '.' or '-'")


def check_action(action: AnyAction) -> None:
    """Raise Invalid for the first thing wrong with a decoded action."""
    check_id(action.id)
    _timeout("timeout_s", action.timeout_s)
    match action:
        case CmdRun():
            _timeout("soft_timeout_s", action.soft_timeout_s)
            _name("shell", action.shell)
            if "\x00" in action.command:
                raise _argument("command contains a NUL byte")
            _path("cwd", action.cwd)
            for key, value in (action.env or {}).items():
                if not _ENV_NAME.fullmatch(key):
                    raise _argument(f"env name {key[:70]!r} is not a valid variable name")
                if "\x00" in value:
                    raise _argument(f"env value of {key} contains a NUL byte")
        case FileRead():
            _path("path", action.path)
            _line("start_line", action.start_line, 1)
            _line("end_line", action.end_line, 1)
        case FileWrite():
            _path("path", action.path)
        case FileEdit():
            _path("path", action.path)
            _line("insert_line", action.insert_line, 0)
            if action.view_range is not None:
                if len(action.view_range) != 2:
                    raise _argument(f"view_range must be [start, end], got {len(action.view_range)} numbers")
                _line("view_range start", action.view_range[0], 1)
                _line("view_range end", action.view_range[1], -1)
        case IPythonRun():
            _name("kernel", action.kernel)
        case Confirm():
            check_id(action.action_id, "action_id")
        case BrowseUrl() | BrowseInteractive() | McpCall() | McpList():
            pass
        case _:
            assert_never(action)


def spec_problem(spec: SessionSpec) -> str | None:
    """The first thing wrong with a session spec that no backend could serve, or None."""
    for name in ("idle_timeout_s", "timeout_s", "soft_timeout_s"):
        value = getattr(spec, name)
        if value is not None and not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
            return f"{name} must be a finite number of seconds above 0 and at most {MAX_TIMEOUT_S:.0f}, got {value!r}"
    if spec.network not in (None, "none", "egress"):
        return f"network must be 'none' or 'egress', got {spec.network!r}"
    if spec.isolation not in (None, "default", "gvisor"):
        return f"isolation must be 'default' or 'gvisor', got {spec.isolation!r}"
    for key, value in spec.env.items():
        if not _ENV_NAME.fullmatch(key):
            return f"env name {key[:70]!r} is not a valid variable name (letters, digits and '_', not starting with a digit)"
        if "\x00" in value:
            return f"env value of {key} contains a NUL byte"
    if spec.workdir is not None and (not spec.workdir or "\x00" in spec.workdir):
        return "workdir must be a non-empty path without NUL bytes"
    res = spec.resources
    if res is not None:
        for name in ("cpus", "memory_mb", "pids"):
            value = getattr(res, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                return f"resources.{name} must be a positive number, got {value!r}"
    for mount in spec.mounts:
        if "\x00" in mount.source or "\x00" in mount.target:
            return "mount paths must not contain NUL bytes"
    return _secrets_problem(spec) or _security_problem(spec) or _placement_problem(spec)


def _placement_problem(spec: SessionSpec) -> str | None:
    placement = spec.placement
    if placement is None:
        return None
    for key in placement.node_selector:
        if not key or len(key) > 316:
            return f"placement.node_selector key {key[:70]!r} must be a label key (1-316 characters)"
    for toleration in placement.tolerations:
        if toleration.operator == "Exists" and toleration.value:
            return "placement.tolerations: operator 'Exists' takes no value"
        if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
            return "placement.tolerations: toleration_seconds applies to effect 'NoExecute' only"
    if placement.runtime_class is not None and not _K8S_NAME.fullmatch(placement.runtime_class):
        return f"placement.runtime_class {placement.runtime_class[:70]!r} is not a Kubernetes object name"
    return None


MIN_SECRET_LENGTH = 4
"""Shorter values would mask ordinary text everywhere (a secret ``a`` would blank every ``a``)."""


def _secrets_problem(spec: SessionSpec) -> str | None:
    for key, value in spec.secrets.items():
        if not _ENV_NAME.fullmatch(key):
            return f"secret name {key[:70]!r} is not a valid variable name (letters, digits and '_', not starting with a digit)"
        if "\x00" in value:
            return f"secret {key} contains a NUL byte"
        if len(value) < MIN_SECRET_LENGTH:
            return f"secret {key} is shorter than {MIN_SECRET_LENGTH} characters: it could not be masked without masking ordinary output"
        if key in spec.env:
            return f"{key} is both in env and in secrets; name it once, in secrets"
    return None


def _security_problem(spec: SessionSpec) -> str | None:
    security = spec.security
    if security is None:
        return None
    timeout = security.policy.confirm_timeout_s if security.policy else None
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
        return f"security.policy.confirm_timeout_s must be above 0 and at most {MAX_TIMEOUT_S:.0f}, got {timeout!r}"
    for n, rule in enumerate(security.rules):
        if not (rule.command or rule.program or rule.path or rule.host or rule.kind):
            return f"security.rules[{n}] has no condition (kind, command, program, args, path or host)"
        if rule.args and not rule.program:
            return f"security.rules[{n}]: args applies to a program; name the program"
        for name in ("command", "program", "args"):
            pattern = getattr(rule, name)
            if pattern is None:
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"security.rules[{n}].{name} is not a regular expression: {exc}"
    return None
