"""Host ports for sandboxes, never handed out twice on one host.

Each purpose has its own range (exec channel, VS Code, user apps). A port is held by an
exclusive ``fcntl.flock`` on its own lock file in a shared lock directory: the lock is per open
file, so two allocators never share a port whether they live in one process or in many, and a
process that dies releases its ports with its file descriptors. A candidate is also test-bound on
127.0.0.1, so a port some other program (or a container adopted after a restart) already
listens on is skipped.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
from typing import Literal

PortKind = Literal["exec", "vscode", "apps"]

RANGES: dict[str, tuple[int, int]] = {
    "exec": (30000, 39999),
    "vscode": (40000, 49999),
    "apps": (50000, 59999),
}
"""Inclusive port ranges per purpose."""


class PortsExhausted(Exception):
    """Every port of a range is taken."""

    def __init__(self, kind: str, low: int, high: int) -> None:
        super().__init__(f"no free {kind} port in {low}-{high}")
        self.kind = kind


def default_lock_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"corral-ports-{os.getuid()}")


class PortAllocator:
    """Hands out host ports and holds them until ``release`` or ``close``."""

    def __init__(self, lock_dir: str | None = None, *, ranges: dict[str, tuple[int, int]] | None = None,
                 bind_host: str = "127.0.0.1") -> None:
        self._lock_dir = lock_dir or default_lock_dir()
        os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
        self._ranges = dict(ranges or RANGES)
        self._bind_host = bind_host
        self._held: dict[int, int] = {}  # port -> fd of its locked file

    def allocate(self, kind: PortKind = "exec") -> int:
        """A free port of ``kind``'s range, now held by this allocator."""
        low, high = self._ranges[kind]
        span = high - low + 1
        start = random.randrange(span)  # spread concurrent allocators over the range
        for step in range(span):
            port = low + (start + step) % span
            if port in self._held:
                continue
            if self.reserve(port):
                return port
        raise PortsExhausted(kind, low, high)

    def reserve(self, port: int) -> bool:
        """Hold a given port (e.g. one of a sandbox adopted after a restart); False if taken."""
        if port in self._held:
            return True
        fd = os.open(os.path.join(self._lock_dir, f"{port}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        if not self._bindable(port):
            os.close(fd)
            return False
        self._held[port] = fd
        return True

    def _bindable(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As servers bind (asyncio sets SO_REUSEADDR): a listener makes the port taken, the
            # TIME_WAIT connections of a server that just closed do not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self._bind_host, port))
            except OSError:
                return False
        return True

    def release(self, port: int) -> None:
        fd = self._held.pop(port, None)
        if fd is not None:
            os.close(fd)  # closing the file drops its lock

    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    def close(self) -> None:
        for port in list(self._held):
            self.release(port)

    def __enter__(self) -> PortAllocator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
