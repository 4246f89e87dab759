"""Sandbox backends: where a session's executor runs."""

from ._base import Backend, BackendError, SandboxHandle, deployment_id
from ._docker_spec import DockerConfig
from .bubblewrap import BubblewrapConfig
from .local import LocalBackend

__all__ = ["deployment_id", "Backend", "BackendError", "BubblewrapConfig", "DockerConfig", "SandboxHandle", "LocalBackend", "make_backend"]

BACKENDS = ("local", "docker", "bubblewrap")


def make_backend(name: str, *, base_dir: str, worker_id: str, docker: DockerConfig | None = None,
                 bubblewrap: BubblewrapConfig | None = None, allowed_mounts: tuple[str, ...] = ()) -> Backend:
    backend = _make(name, base_dir=base_dir, worker_id=worker_id, docker=docker, bubblewrap=bubblewrap)
    backend.allowed_mounts = allowed_mounts
    return backend


def _make(name: str, *, base_dir: str, worker_id: str, docker: DockerConfig | None,
          bubblewrap: BubblewrapConfig | None) -> Backend:
    if name == "local":
        return LocalBackend(base_dir=base_dir, worker_id=worker_id)
    if name == "docker":
        from .docker import DockerBackend  # aiodocker is loaded only by workers that use it

        return DockerBackend(base_dir=base_dir, worker_id=worker_id, config=docker)
    if name == "bubblewrap":
        from .bubblewrap import BubblewrapBackend

        return BubblewrapBackend(base_dir=base_dir, worker_id=worker_id, config=bubblewrap or BubblewrapConfig())
    raise BackendError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
