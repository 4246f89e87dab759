"""What the port-forwarding tests share: a web server inside a sandbox, and a plain HTTP client."""

from __future__ import annotations

import asyncio
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve_inside(session, port: int, size: int = 4 * 1024 * 1024) -> str:  # type: ignore[no-untyped-def]
    """Start ``python3 -m http.server`` on the sandbox's 127.0.0.1:``port`` over a directory holding
    ``big.bin`` (``size`` random bytes) and ``small.txt``; returns big.bin's sha256 once it listens."""
    made = await session.cmd(
        "mkdir -p site && python3 -c \"import os, hashlib; d = os.urandom(%d); open('site/big.bin', 'wb').write(d); "
        "open('site/small.txt', 'w').write('hello\\n'); print(hashlib.sha256(d).hexdigest())\"" % size)
    assert made.exit_code == 0, made
    started = await session.cmd(f"(cd site && exec python3 -m http.server --bind 127.0.0.1 {port}) </dev/null >/dev/null 2>&1 &")
    assert started.exit_code == 0, started
    listening = await session.cmd(  # the fact to wait for: the server accepts connections
        "python3 -c \"import socket, time\nfor _ in range(200):\n try: socket.create_connection(('127.0.0.1', %d)).close(); break\n"
        " except OSError: time.sleep(0.05)\nelse: raise SystemExit(1)\"" % port)
    assert listening.exit_code == 0, listening
    return made.content.strip()


async def http_get(host: str, port: int, path: str = "/", *headers: str) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection (``Connection: close``): status, headers (lower-cased names), body."""
    reader, writer = await asyncio.open_connection(host, port)
    extra = "".join(h + "\r\n" for h in headers)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{extra}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), fields, body


async def refused(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False
