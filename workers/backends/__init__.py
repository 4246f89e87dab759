"""Sandbox backends: where a session's executor runs."""

from ._base import Backend, BackendError, SandboxHandle
from .local import LocalBackend

__all__ = ["Backend", "BackendError", "SandboxHandle", "LocalBackend", "make_backend"]


def make_backend(name: str, *, base_dir: str, worker_id: str) -> Backend:
    if name == "local":
        return LocalBackend(base_dir=base_dir, worker_id=worker_id)
    raise BackendError(f"unknown backend {name!r} (available: local)")
