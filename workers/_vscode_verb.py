"""The worker's ``vscode`` verb: code-server in the session's sandbox, forwarded to a host port behind a token.

``corral.worker.<wid>.vscode`` (a ``SessionRef``) asks the session's executor to start code-server
(``ExecutorClient.vscode``: its port on the sandbox's loopback), then exposes that port through the
worker's ``PortForwards`` with ``purpose="vscode"`` and the session's token: the forwarder answers
403 to a request without ``?tkn=<token>`` or the ``corral-tkn-<host port>`` cookie it sets, so only
who got the URL reaches code-server (which itself runs with ``--auth none``). The token is made once per
session, kept by the worker, and forgotten when the session closes.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import structlog

from executor.client import ExecutorClient, ExecutorUnavailable, VscodeUnavailable
from protocol import ErrorReply, PortInfo, VscodeInfo, codes

from ._ports import PortsExhausted

if TYPE_CHECKING:
    from protocol import PortPurpose

log = structlog.get_logger()


class Forwards(Protocol):
    """What this verb needs of ``PortForwards`` (``_forward``): an in-memory one in its tests."""

    async def expose(self, session_id: str, client: ExecutorClient, port: int, *, purpose: "PortPurpose" = "apps",
                     token: str | None = None, path: str = "/") -> PortInfo: ...

    async def unexpose(self, session_id: str, port: int) -> PortInfo: ...


_CODES = {409: codes.PLUGIN_NOT_ENABLED, 422: codes.PLUGIN_UNAVAILABLE}


class VscodeVerb:
    """Per-session tokens, and the answer to one ``vscode`` request."""

    def __init__(self, forwards: Forwards) -> None:
        self._forwards = forwards
        self._tokens: dict[str, str] = {}
        self._ports: dict[str, int] = {}
        """The sandbox port last exposed for each session's code-server (a restarted one listens on another)."""

    def token(self, session_id: str) -> str:
        """The session's secret for its forwarded code-server (made on first use)."""
        return self._tokens.setdefault(session_id, secrets.token_urlsafe(24))

    def forget(self, session_id: str) -> None:
        """The session closed: its token is never valid again (its forwards close with the session)."""
        self._tokens.pop(session_id, None)
        self._ports.pop(session_id, None)

    async def open(self, session_id: str, client: ExecutorClient) -> VscodeInfo | ErrorReply:
        """Start (or find) the session's code-server and forward it; every failure is an ErrorReply."""
        try:
            server = await client.vscode()
        except VscodeUnavailable as exc:
            return ErrorReply(code=_CODES.get(exc.status, codes.SANDBOX_FAILED), message=exc.reason)
        except ExecutorUnavailable as exc:
            return ErrorReply(code=codes.SANDBOX_FAILED, message=f"the sandbox's executor did not answer: {exc}")
        token = self.token(session_id)
        try:
            await self._unexpose_stale(session_id, server.port)
            port = await self._forwards.expose(session_id, client, server.port, purpose="vscode", token=token,
                                               path=f"/?folder={quote(server.workdir)}")
        except (PortsExhausted, OSError) as exc:
            return ErrorReply(code=codes.NO_CAPACITY, message=f"cannot forward code-server's port: {exc}")
        self._ports[session_id] = server.port
        url = port.url + ("&" if "?" in port.url else "?") + f"tkn={token}"
        log.info("vscode_opened", session_id=session_id, port=server.port, host_port=port.host_port)
        return VscodeInfo(session_id=session_id, url=url, host=port.host, host_port=port.host_port, token=token,
                          workdir=server.workdir)

    async def _unexpose_stale(self, session_id: str, port: int) -> None:
        """Stop forwarding the port of a code-server that died and was started again elsewhere."""
        stale = self._ports.get(session_id)
        if stale is not None and stale != port:
            try:
                await self._forwards.unexpose(session_id, stale)
            except Exception as exc:  # already gone (not_exposed): nothing to undo
                log.info("vscode_stale_port_not_unexposed", session_id=session_id, port=stale, error=str(exc))
