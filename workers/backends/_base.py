"""The backend interface every sandbox backend implements."""

from __future__ import annotations

import abc

import msgspec

from protocol import SessionSpec


class BackendError(Exception):
    """A sandbox could not be created, reached or destroyed; ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "sandbox_failed") -> None:
        super().__init__(message)
        self.code = code


class SandboxHandle(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to reach and manage one sandbox; stored beside it for re-adoption."""

    session_id: str
    worker_id: str
    backend: str
    key: str
    socket_path: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    pid: int | None = None
    container_id: str | None = None
    workdir: str = ""
    created_at: float = 0.0
    labels: dict[str, str] = {}


class Backend(abc.ABC):
    """Creates, finds and destroys sandboxes. Implementations are async context managers."""

    name: str

    @abc.abstractmethod
    async def create(self, session_id: str, spec: SessionSpec) -> SandboxHandle:
        """Start a sandbox whose executor answers before this returns."""

    @abc.abstractmethod
    async def destroy(self, handle: SandboxHandle) -> None:
        """Stop and remove the sandbox; idempotent."""

    @abc.abstractmethod
    async def list(self) -> list[SandboxHandle]:
        """Sandboxes of this worker that still exist (for re-adoption after a restart)."""

    @abc.abstractmethod
    async def alive(self, handle: SandboxHandle) -> str | None:
        """None if the sandbox is running, else why not (e.g. 'exited with code 137')."""

    async def aclose(self) -> None:
        """Release the backend's own resources (not the sandboxes)."""

    async def __aenter__(self) -> "Backend":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
