"""A small HTTP/1.1 framing layer over asyncio streams, shared by the executor and its client.

The executor speaks plain HTTP/1.1 (keep-alive, chunked responses) so it can be poked with
``curl --unix-socket``; it does not pull in a web framework because every sandbox pays for the
import at start (aiohttp.web alone costs ~180 ms here, the whole executor starts in ~60 ms).
Each chunk of a streamed response is exactly one encoded observation.

Why not h11 (the field's pure-Python HTTP/1.1 state machine, which httpcore and uvicorn use):
measured on the project VM, importing it adds 17–20 ms to the executor's start (~9 % of its
import time, where the budget was 5 %), and one request/response through an ``h11.Connection``
costs ~130 µs on the client side against ~15 µs for this framing — about +17 % on a 1.2 ms echo
round trip once both ends pay it.
The subset spoken here is small (one request at a time per connection, chunked or sized
responses) and is held to the strict rules below.

Both ends read what the other may have written to hurt them, so the framing is strict: a head is
at most ``MAX_HEAD`` bytes and has no stray CR, LF or NUL inside its lines; lengths are plain
decimal (bodies) or hex (chunks) of bounded size and are checked against the reader's cap before a
single byte of the body is read.
"""

from __future__ import annotations

import asyncio
import re
import socket

MAX_HEAD = 64 * 1024
"""A message head (start line and headers); also the stream reader's buffer limit."""
MAX_BODY = 64 * 1024 * 1024
"""What the executor accepts as a request body (the worker is trusted; this bounds a bug)."""
MAX_SIZE_LINE = 256
"""A chunk-size line: a few hex digits, optional extensions, CRLF."""

_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})(?:;[^\r\n\x00]*)?\r\n")


class HttpError(Exception):
    """A malformed message on the executor channel."""


class TooLarge(HttpError):
    """A declared length over the reader's cap; nothing of the body was read."""


class Request:
    __slots__ = ("method", "path", "headers", "body")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    """Read a start line and headers; None at a clean end of stream."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise HttpError("connection closed inside a message head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(f"message head over {MAX_HEAD} bytes") from None
    # Every CR and LF must belong to a CRLF line end, and no line may hold a NUL: a request line
    # smuggling a second request (or a header) through a bare LF is refused, not parsed.
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf or b"\x00" in raw:
        raise HttpError("stray CR, LF or NUL in a message head")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed header line {line[:100]!r}")
        headers[name.lower()] = value.strip()
    return lines[0], headers


def content_length(headers: dict[str, str], max_bytes: int) -> int:
    """The declared body length, refused (TooLarge) over ``max_bytes`` before anything is read."""
    raw = headers.get("content-length", "0") or "0"
    if not _CONTENT_LENGTH.fullmatch(raw):
        raise HttpError(f"bad Content-Length {raw[:40]!r}")
    length = int(raw)
    if length > max_bytes:
        raise TooLarge(f"body of {length} bytes declared, over the {max_bytes}-byte cap")
    return length


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str], max_bytes: int = MAX_BODY) -> bytes:
    length = content_length(headers, max_bytes)
    if not length:
        return b""
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed inside a body") from None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    head = await read_head(reader)
    if head is None:
        return None
    start, headers = head
    parts = start.split(" ")
    if len(parts) != 3 or not parts[1].startswith("/"):
        raise HttpError(f"malformed request line {start[:200]!r}")
    return Request(parts[0], parts[1], headers, await read_body(reader, headers))


def response_head(status: int, reason: str, content_type: str, *, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


async def read_chunk_size(reader: asyncio.StreamReader, max_bytes: int) -> int:
    """A chunk's size line, parsed and checked against ``max_bytes``; 0 is the last chunk."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed before a chunk") from None
    except asyncio.LimitOverrunError:
        raise HttpError(f"chunk-size line over {MAX_HEAD} bytes") from None
    match = _CHUNK_SIZE.fullmatch(line) if len(line) <= MAX_SIZE_LINE else None
    if match is None:
        raise HttpError(f"malformed chunk-size line {line[:40]!r}")
    size = int(match[1], 16)
    if size > max_bytes:
        raise TooLarge(f"chunk of {size} bytes declared, over the {max_bytes}-byte cap")
    return size


async def read_chunk_data(reader: asyncio.StreamReader, size: int) -> bytes | None:
    """The rest of a chunk whose size line said ``size``; None after the last chunk."""
    try:
        if size == 0:
            if await reader.readuntil(b"\r\n") != b"\r\n":
                raise HttpError("trailers after the last chunk are not supported")
            return None
        data = await reader.readexactly(size + 2)
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed inside a chunk") from None
    except asyncio.LimitOverrunError:
        raise HttpError("trailer line too long") from None
    if data[-2:] != b"\r\n":
        raise HttpError("chunk data not followed by CRLF")
    return data[:-2]


async def read_chunk(reader: asyncio.StreamReader, max_bytes: int = MAX_BODY) -> bytes | None:
    """One chunk of a chunked body, without time limits; None after the last one."""
    return await read_chunk_data(reader, await read_chunk_size(reader, max_bytes))


def tune_socket(writer: asyncio.StreamWriter) -> None:
    """Small request/response messages must not wait for Nagle (~40 ms stalls over TCP)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
