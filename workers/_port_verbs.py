"""The worker's ``expose`` / ``unexpose`` verbs, and re-opening forwards after a restart.

``corral.worker.<wid>.expose`` and ``.unexpose`` take a ``PortRef`` and answer a ``PortInfo`` or an
``ErrorReply``: ``unknown_session``, ``invalid_argument`` (a port outside 1–65535), ``not_exposed``,
``no_capacity`` (the host port range is exhausted). The forwards themselves are ``_forward``'s.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit

import msgspec
import structlog

from protocol import ErrorReply, PortInfo, PortRef, codes, decode_as

from ._forward import NotExposed, PortForwards, valid_port
from ._ports import PortsExhausted
from .session import SessionRunner

log = structlog.get_logger()


async def port_verb(verb: str, data: bytes, *, runners: Mapping[str, SessionRunner], forwards: PortForwards,
                    worker_id: str) -> PortInfo | ErrorReply:
    try:
        ref = decode_as(data, PortRef)
    except msgspec.DecodeError as exc:
        return ErrorReply(code=codes.BAD_PAYLOAD, message=f"bad {verb} request: {exc}")
    runner = runners.get(ref.session_id)
    if runner is None:
        return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"worker {worker_id} has no session {ref.session_id!r}")
    if not valid_port(ref.port):
        return ErrorReply(code=codes.INVALID_ARGUMENT, message=f"not a TCP port: {ref.port} (1-65535)")
    if verb == "unexpose":
        try:
            return await forwards.unexpose(ref.session_id, ref.port)
        except NotExposed as exc:
            return ErrorReply(code=codes.NOT_EXPOSED, message=str(exc))
    try:
        return await forwards.expose(ref.session_id, runner.client, ref.port)
    except PortsExhausted as exc:
        return ErrorReply(code=codes.NO_CAPACITY, message=f"cannot expose port {ref.port}: {exc}")
    except OSError as exc:
        return ErrorReply(code=codes.NO_CAPACITY, message=f"cannot listen for port {ref.port}: {exc}")


async def reopen(forwards: PortForwards, runner: SessionRunner, ports: list[PortInfo]) -> list[PortInfo]:
    """After a restart: open again the ``apps`` forwards the registry lists for an adopted session,
    on the same host ports when they are free (else on new ones). ``vscode`` forwards are not
    re-opened here: their token is not in the registry (the VS Code plugin opens them again on the
    next ``vscode`` request)."""
    opened = []
    for old in ports:
        if old.purpose != "apps":
            log.info("port_not_reopened", session_id=runner.session_id, port=old.port, purpose=old.purpose)
            continue
        try:
            opened.append(await forwards.expose(runner.session_id, runner.client, old.port, purpose=old.purpose,
                                                path=urlsplit(old.url).path or "/", host_port=old.host_port))
        except (PortsExhausted, OSError, ValueError) as exc:
            log.warning("port_reopen_failed", session_id=runner.session_id, port=old.port, error=str(exc))
    return opened
