"""The plumbing of one bwrap start: the pipes and fds it is given, the executor's socket, pipe reads."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import socket
from typing import BinaryIO

from ._bwrap_seccomp import filter_fd


class SpawnFds:
    """The fds one bwrap gets, and the worker's ends of its pipes.

    ``child`` fds are inherited by bwrap and closed here once it runs; ``passed`` ones (the
    listening socket) are inherited too but belong to the caller. A worker-side end is either
    ``take``-n by whoever will close it or closed by ``close_all``."""

    def __init__(self, passed: list[int]) -> None:
        self.passed = list(passed)
        self.child: list[int] = []
        self._parent: dict[str, int] = {}
        self._args: list[str] = []
        self.config_fd = -1

    @classmethod
    def open(cls, config: dict[str, object], *, passed: list[int], block: bool, sync: bool,
             seccomp: bytes | None) -> "SpawnFds":
        fds = cls(passed)
        try:
            config_r, config_w = os.pipe()  # the key reaches the executor through a pipe: no argv, no environ
            fds.child.append(config_r)
            fds.config_fd = config_r
            with os.fdopen(config_w, "wb") as f:
                f.write(json.dumps(config).encode())  # far below a pipe's buffer: never blocks
            fds._pipe("info", "--info-fd", child_reads=False)
            if block:
                fds._pipe("block", "--block-fd", child_reads=True)
            if sync:  # held by the sandbox alone: slirp4netns's --exit-fd reads EOF once the sandbox is gone
                fds._pipe("sync", "--sync-fd", child_reads=False)
            if seccomp is not None:
                fd = filter_fd(seccomp)
                fds.child.append(fd)
                fds._args += ["--seccomp", str(fd)]
        except BaseException:
            fds.close_all()
            raise
        return fds

    def _pipe(self, name: str, option: str, *, child_reads: bool) -> None:
        r, w = os.pipe()
        child, parent = (r, w) if child_reads else (w, r)
        self.child.append(child)
        self._parent[name] = parent
        self._args += [option, str(child)]

    @property
    def inherited(self) -> list[int]:
        return self.child + self.passed

    def bwrap_args(self) -> list[str]:
        return list(self._args)

    def take(self, name: str) -> int:
        """The worker's end of pipe ``name``; the caller closes it."""
        return self._parent.pop(name)

    def release(self) -> None:
        """Let a bwrap blocked on --block-fd go on."""
        if "block" in self._parent:
            block_w = self._parent.pop("block")
            try:
                os.write(block_w, b"1")
            finally:
                os.close(block_w)

    def close_child(self) -> None:
        for fd in self.child:
            os.close(fd)
        self.child = []

    def close_all(self) -> None:
        self.close_child()
        for fd in self._parent.values():
            os.close(fd)
        self._parent.clear()


def listen_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` (0600), bound by the worker where no sandbox can reach it."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def private_file(path: Path) -> BinaryIO:
    """``path`` opened for appending, created 0600: logs and handles are the worker's alone."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab")


async def read_json_fd(fd: int) -> dict[str, object]:
    """Read one JSON object from a pipe (bwrap's --info-fd) without blocking the loop; closes fd."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue
        raise ValueError(f"bwrap exited before starting the sandbox ({data[:200]!r})")
    finally:
        transport.close()


async def read_some(fd: int) -> bytes:
    """What a pipe offers first (b"" at EOF), without blocking the loop; closes fd."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        return await reader.read(16)
    finally:
        transport.close()
