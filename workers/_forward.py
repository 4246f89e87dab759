"""Forwarded ports: a host port carried to a TCP port of a sandbox's loopback, without a sandbox network.

``PortForwards`` (one per worker) listens on a host port per forward (from the ``PortAllocator``'s
``apps`` or ``vscode`` range) and carries each accepted connection through a tunnel of the
session's executor channel (``ExecutorClient.open_tunnel``: the same authenticated, peer-checked
socket every action uses) to ``127.0.0.1:<port>`` inside the sandbox, like ``kubectl
port-forward``. Nothing is connected in the sandbox until a host connection arrives; when nothing
listens there, that host connection is closed at once.

A forward with a ``token`` checks the first HTTP request of each connection first (``_token_gate``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog

from executor.client import ExecutorClient, ExecutorUnavailable, TunnelRefused, pipe
from protocol import PortInfo, PortPurpose

from . import _token_gate
from ._ports import PortAllocator

log = structlog.get_logger()

BIND_ATTEMPTS = 5
"""A port the allocator found free may be taken before we bind it (another program): try others."""


class ForwardError(Exception):
    """A forward could not be made or found."""


class NotExposed(ForwardError):
    def __init__(self, session_id: str, port: int) -> None:
        super().__init__(f"port {port} of session {session_id} is not exposed")
        self.session_id = session_id
        self.port = port


class _Forward:
    """One listening host port and the connections it carries."""

    def __init__(self, info: PortInfo, client: ExecutorClient, token: str | None) -> None:
        self.info = info
        self.client = client
        self.token = token
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False


def valid_port(port: object) -> bool:
    return isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535


class PortForwards:
    """Every forwarded port of one worker, by (session, sandbox port)."""

    def __init__(self, allocator: PortAllocator, *, bind_host: str = "127.0.0.1", advertise_host: str | None = None) -> None:
        self._allocator = allocator
        self._bind_host = bind_host
        self._advertise_host = advertise_host or bind_host
        self._forwards: dict[tuple[str, int], _Forward] = {}
        self._lock = asyncio.Lock()
        self._stats = {"accepted": 0, "refused": 0, "denied": 0, "failed": 0}

    async def expose(self, session_id: str, client: ExecutorClient, port: int, *, purpose: PortPurpose = "apps",
                     token: str | None = None, path: str = "/", host_port: int | None = None) -> PortInfo:
        """Forward a host port to ``port`` of the session's sandbox; the same forward when it exists.

        ``host_port``: try this host port first (a forward re-opened after a worker restart).
        Raises ``ValueError`` for a port outside 1–65535, ``PortsExhausted`` when the range is full."""
        if not valid_port(port):
            raise ValueError(f"not a TCP port: {port!r}")
        async with self._lock:
            found = self._forwards.get((session_id, port))
            if found is not None:
                return found.info
            forward = _Forward(PortInfo(session_id=session_id, port=port, host="", host_port=0, url=""), client, token)
            forward.server, bound = await self._listen(forward, purpose, host_port)
            host = self._advertise_host
            forward.info = PortInfo(session_id=session_id, port=port, host=host, host_port=bound, purpose=purpose,
                                    url=f"http://{_url_host(host)}:{bound}{path if path.startswith('/') else '/' + path}")
            self._forwards[(session_id, port)] = forward
        log.info("port_exposed", session_id=session_id, port=port, host_port=bound, purpose=purpose, gated=token is not None)
        return forward.info

    async def _listen(self, forward: _Forward, purpose: PortPurpose, wanted: int | None) -> tuple[asyncio.AbstractServer, int]:
        """A listening server on a held host port of ``purpose``'s range (``wanted`` first when free)."""
        for attempt in range(BIND_ATTEMPTS):
            if attempt == 0 and wanted is not None and self._allocator.reserve(wanted):
                host_port = wanted
            else:
                host_port = self._allocator.allocate(purpose)  # PortsExhausted goes to the caller
            try:
                server = await asyncio.start_server(lambda r, w: self._serve(forward, r, w), self._bind_host, host_port,
                                                    limit=_token_gate.MAX_HEAD)
            except OSError as exc:
                self._allocator.release(host_port)
                log.warning("port_bind_failed", host_port=host_port, error=str(exc))
                continue
            return server, host_port
        raise OSError(f"could not bind a {purpose} port on {self._bind_host} in {BIND_ATTEMPTS} attempts")

    async def unexpose(self, session_id: str, port: int) -> PortInfo:
        async with self._lock:
            forward = self._forwards.pop((session_id, port), None)
        if forward is None:
            raise NotExposed(session_id, port)
        await self._close(forward)
        log.info("port_unexposed", session_id=session_id, port=port, host_port=forward.info.host_port)
        return forward.info

    def ports(self, session_id: str) -> list[PortInfo]:
        return [f.info for (sid, _), f in self._forwards.items() if sid == session_id]

    async def close_session(self, session_id: str) -> None:
        """Close every forward of a session: listeners, live connections, host ports."""
        async with self._lock:
            mine = [key for key in self._forwards if key[0] == session_id]
            forwards = [self._forwards.pop(key) for key in mine]
        for forward in forwards:
            await self._close(forward)
        if forwards:
            log.info("session_ports_closed", session_id=session_id, ports=len(forwards))

    def statistics(self) -> dict[str, int]:
        return {"forwards": len(self._forwards), "connections": sum(len(f.tasks) for f in self._forwards.values()),
                **self._stats}

    async def aclose(self) -> None:
        async with self._lock:
            forwards, self._forwards = list(self._forwards.values()), {}
        for forward in forwards:
            await self._close(forward)

    async def _close(self, forward: _Forward) -> None:
        forward.closed = True
        if forward.server is not None:
            forward.server.close()
        tasks = list(forward.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if forward.server is not None:
            await forward.server.wait_closed()
        self._allocator.release(forward.info.host_port)

    # ------------------------------------------------------------ connections
    async def _serve(self, forward: _Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One host connection: (the token gate, then) a tunnel, piped both ways until both ends close."""
        task = asyncio.current_task()
        if forward.closed or task is None:  # accepted just as the forward closed
            writer.close()
            return
        forward.tasks.add(task)
        info = forward.info
        self._stats["accepted"] += 1
        try:
            _nodelay(writer)
            head = b""
            if forward.token is not None:
                head = await self._gate(forward, reader, writer)
                if not head:
                    return
            try:
                tunnel_reader, tunnel_writer = await forward.client.open_tunnel(info.port)
            except TunnelRefused as exc:
                self._stats["refused"] += 1
                log.info("port_forward_refused", session_id=info.session_id, port=info.port, reason=exc.reason)
                return
            _nodelay(tunnel_writer)
            tunnel_writer.write(head)
            await pipe(reader, writer, tunnel_reader, tunnel_writer)
        except ExecutorUnavailable as exc:
            self._stats["failed"] += 1
            log.warning("port_forward_unavailable", session_id=info.session_id, port=info.port, error=str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("port_forward_broken", session_id=info.session_id, port=info.port, error=repr(exc))
        except Exception:  # a bug: this connection ends, the forward and the worker live on
            self._stats["failed"] += 1
            log.exception("port_forward_failed", session_id=info.session_id, port=info.port)
        finally:
            writer.close()
            forward.tasks.discard(task)

    async def _gate(self, forward: _Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The first request head when it carries the token by cookie; b"" when answered here."""
        assert forward.token is not None
        cookie = _token_gate.cookie_name(forward.info.host_port)
        try:
            async with asyncio.timeout(_token_gate.HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = b""
        verdict = _token_gate.check_request(head, forward.token, cookie) if head else _token_gate.Verdict("deny")
        if verdict.action == "pass":
            return head
        if verdict.action == "redirect":
            writer.write(_token_gate.redirect(verdict.location, forward.token, cookie))
        else:
            self._stats["denied"] += 1
            log.info("port_forward_denied", session_id=forward.info.session_id, port=forward.info.port)
            writer.write(_token_gate.FORBIDDEN)
        await writer.drain()
        return b""


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """Small requests must not wait for Nagle (a host-side TCP socket; the channel may be TCP too)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
