"""The worker's side of ``/v1/spawn``: a process in the sandbox, its stdio as a pair of streams."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import msgspec


class SpawnFailed(Exception):
    """The executor refused to start the process (unknown command, bad request); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StdioHandle(msgspec.Struct, frozen=True, kw_only=True):
    """A process the executor spawned: its id there, its pid (in the sandbox's pid namespace), and
    how to read the tail of its stderr (also after it exited)."""

    spawn_id: str
    pid: int
    fetch_stderr: Callable[[str], Awaitable[str]]

    async def stderr_tail(self) -> str:
        return await self.fetch_stderr(self.spawn_id)


def spawn_request_head(auth: bytes, body: bytes) -> bytes:
    return (b"GET /v1/spawn HTTP/1.1\r\nHost: executor\r\nUpgrade: corral-stdio\r\nConnection: Upgrade\r\n"
            b"Content-Type: application/json\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(body) + body)


StdioStreams = tuple[asyncio.StreamReader, asyncio.StreamWriter, StdioHandle]
