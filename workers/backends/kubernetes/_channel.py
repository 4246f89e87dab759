"""A byte stream to a pod's port through the API server's port-forward (WebSocket, v4.channel.k8s.io).

Each ``open()`` is one WebSocket, bridged to a ``socket.socketpair()`` whose other end becomes the
(StreamReader, StreamWriter) pair ``ExecutorClient(connect=...)`` wants: the client's keep-alive
HTTP/1.1 connections are port-forward streams, pooled like any other socket. Nothing of the pod is
exposed; only the API server (which the worker already talks to) carries the bytes.

Frames: the first byte names the channel (0 data, 1 error, for the one port asked); the server's
first two bytes on each channel are the port, little-endian; the client sends ``b"\\x00" + data``.
Anything on the error channel (the kubelet could not connect to the port) closes the stream.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import structlog

from executor.client import ExecutorUnavailable

log = structlog.get_logger()

DATA, ERROR = 0, 1
PREFACE = 2
READ_SIZE = 1 << 16
STREAM_LIMIT = 64 * 1024
"""The reader's line limit: as large as the longest response head the executor client accepts."""


class PortForwarder:
    """Opens port-forward streams to pods; one per executor connection. Owns its pump tasks."""

    def __init__(self, core_ws: Any) -> None:
        self._core = core_ws
        """A CoreV1Api over the backend's one WsApiClient."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, pod: str, namespace: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            pending = await self._core.connect_get_namespaced_pod_portforward(pod, namespace, ports=str(port),
                                                                              _preload_content=False)
            ws = await pending  # aiohttp's ws_connect request: the WebSocket once the upgrade is answered
        except (aiohttp.ClientError, OSError) as exc:
            raise ExecutorUnavailable(f"cannot open a port-forward to pod {namespace}/{pod}: {exc}") from exc
        except Exception as exc:  # kubernetes_asyncio's ApiException (404: the pod is gone) and the like
            raise ExecutorUnavailable(f"cannot open a port-forward to pod {namespace}/{pod}: "
                                      f"{getattr(exc, 'reason', None) or exc}") from exc
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        try:
            reader, writer = await asyncio.open_connection(sock=ours, limit=STREAM_LIMIT)
        except BaseException:
            ours.close()
            theirs.close()
            await ws.close()
            raise
        task = asyncio.create_task(self._pump(ws, theirs, f"{namespace}/{pod}:{port}", reader))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reader, writer

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse, sock: socket.socket, where: str,
                    reader: asyncio.StreamReader) -> None:
        """Copies both ways until either side ends; then closes both (the client sees EOF, or the
        kubelet's error text as an ``ExecutorUnavailable`` from its next read)."""
        pumps = {asyncio.create_task(self._upstream(ws, sock)),
                 asyncio.create_task(self._downstream(ws, sock, where, reader))}
        try:
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    log.debug("k8s_port_forward_broken", where=where, error=str(exc))
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            sock.close()
            await ws.close()

    async def _upstream(self, ws: aiohttp.ClientWebSocketResponse, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(sock, READ_SIZE):
            await ws.send_bytes(b"\x00" + data)

    async def _downstream(self, ws: aiohttp.ClientWebSocketResponse, sock: socket.socket, where: str,
                          reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        skip = {DATA: PREFACE, ERROR: PREFACE}
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel in skip and skip[channel]:
                cut = min(skip[channel], len(data))
                skip[channel] -= cut
                data = data[cut:]
            if not data:
                continue
            if channel == DATA:
                await loop.sock_sendall(sock, data)
            elif channel == ERROR:
                text = data.decode(errors="replace")[:300]
                log.warning("k8s_port_forward_error", where=where, error=text)
                reader.set_exception(ExecutorUnavailable(f"the port-forward to {where} failed: {text}"))
                return

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
