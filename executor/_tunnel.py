"""Tunnels: a channel connection upgraded to a raw byte pipe to a TCP port of the sandbox's loopback.

``GET /v1/tunnel/<port>`` with ``Upgrade: corral-tunnel`` makes the executor connect to
``127.0.0.1:<port>`` inside the sandbox; on success it answers ``101 Switching Protocols`` and from
then on the connection carries bytes both ways unchanged, the way ``kubectl port-forward`` does. The
worker forwards a host port through it (``workers/_forward.py``) without the sandbox having any
network: the channel is the same authenticated, peer-checked Unix socket (or TCP) every action uses.

``pipe`` is shared by both ends: it copies each direction with bounded buffers (``drain()``),
passes a half-close on (EOF one way shuts the other socket's write side) and closes both sockets
once both directions are done, or at once when either breaks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

import msgspec

from . import _http

UPGRADE = "corral-tunnel"
PREFIX = "/v1/tunnel/"
CONNECT_TIMEOUT_S = 10.0
"""Connecting to the sandbox's loopback succeeds or is refused at once; this bounds a wedged stack."""
READ_BYTES = 256 * 1024

_Writer = asyncio.StreamWriter


def parse_port(path: str) -> int | None:
    """The port of ``/v1/tunnel/<port>``: plain decimal 1–65535, else None."""
    raw = path.removeprefix(PREFIX)
    if not raw.isascii() or not raw.isdigit() or len(raw) > 5:
        return None
    port = int(raw)
    return port if 1 <= port <= 65535 else None


def nodelay(writer: _Writer) -> None:
    """TCP_NODELAY on a TCP stream (a no-op for Unix sockets): tunnelled requests are small."""
    _http.tune_socket(writer)


async def serve(path: str, headers: dict[str, str], reader: asyncio.StreamReader, writer: _Writer) -> None:
    """Answer an (authorised) tunnel request and, when the inner connection opens, pipe it."""
    port = parse_port(path)
    if port is None:
        return await _refuse(writer, 400, "Bad Request", {"error": f"not a TCP port: {path.removeprefix(PREFIX)[:20]!r}"})
    if headers.get("upgrade", "").lower() != UPGRADE:
        return await _refuse(writer, 400, "Bad Request", {"error": f"a tunnel needs 'Upgrade: {UPGRADE}'"})
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_BYTES)
    except (OSError, TimeoutError) as exc:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else f"no connection within {CONNECT_TIMEOUT_S:g}s"
        return await _refuse(writer, 502, "Bad Gateway", {"error": reason, "port": port})
    nodelay(inner_writer)
    writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE}\r\nConnection: Upgrade\r\n\r\n".encode())
    await pipe(reader, writer, inner_reader, inner_writer)


async def _refuse(writer: _Writer, status: int, reason: str, body: dict[str, object]) -> None:
    data = msgspec.json.encode(body)
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                 "Connection: close\r\n\r\n".encode() + data)
    await writer.drain()


async def pipe(a_reader: asyncio.StreamReader, a_writer: _Writer,
               b_reader: asyncio.StreamReader, b_writer: _Writer) -> tuple[int, int]:
    """Copy a→b and b→a until both ends are done; returns the bytes copied each way.

    Both writers are closed when this returns, fails or is cancelled."""
    def close_both() -> None:
        a_writer.close()
        b_writer.close()

    try:
        there, back = await asyncio.gather(_copy(a_reader, b_writer, close_both), _copy(b_reader, a_writer, close_both))
    finally:
        close_both()
    return there, back


async def _copy(reader: asyncio.StreamReader, writer: _Writer, close_both: Callable[[], None]) -> int:
    """One direction. An EOF is passed on as a half-close; a broken socket either way closes both
    (a closed transport ends the other direction's read with an EOF)."""
    copied = 0
    try:
        while data := await reader.read(READ_BYTES):
            writer.write(data)
            copied += len(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except (ConnectionError, OSError):
        close_both()
    return copied
