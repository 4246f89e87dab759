"""The backend interface every sandbox backend implements."""

from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path
import time
from typing import Callable

import msgspec

from executor.client import Claim, ExecutorClient, ExecutorUnavailable
from protocol import Placement, SessionSpec


class BackendError(Exception):
    """A sandbox could not be created, reached or destroyed; ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "sandbox_failed") -> None:
        super().__init__(message)
        self.code = code


class SandboxHandle(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to reach and manage one sandbox; stored beside it for re-adoption."""

    sandbox_id: str
    session_id: str
    """Empty while the sandbox waits unclaimed in a warm pool."""
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
    keep: bool = False
    """Stop but do not remove the sandbox when its session closes (SessionSpec.keep); survives re-adoption."""
    secrets: dict[str, str] = {}
    """The session's secrets (SessionSpec.secrets), kept here (a 0600 file beside the sandbox, like the key)
    and not in the registry, so that a restarted worker still masks them."""


def deployment_id(base_dir: str) -> str:
    """A short stable id for everything one deployment owns on a host: its data directory, hashed.

    Two deployments on one host (another data dir, another broker) never adopt, sweep or share a
    socket with each other's sandboxes, because each labels and names what it creates with this."""
    return hashlib.sha256(os.path.realpath(base_dir).encode()).hexdigest()[:8]


HANDLE_FILE = "sandbox.json"
"""Beside each sandbox's files on the worker's host: its handle, so a restarted worker finds it."""


def save_handle(sandbox_dir: Path, handle: SandboxHandle) -> None:
    """Write the handle, readable by the worker's user alone: it holds the key and the secrets."""
    fd = os.open(sandbox_dir / HANDLE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o600)
        out.write(msgspec.json.encode(handle))


def load_handle(sandbox_dir: Path) -> SandboxHandle | None:
    try:
        return msgspec.json.decode((sandbox_dir / HANDLE_FILE).read_bytes(), type=SandboxHandle)
    except (OSError, msgspec.DecodeError):
        return None


def load_handles(root: Path) -> list[SandboxHandle]:
    """The handles of every sandbox directory under ``root``."""
    return [h for path in root.glob(f"*/{HANDLE_FILE}") if (h := load_handle(path.parent)) is not None]


class Backend(abc.ABC):
    """Creates, finds and destroys sandboxes. Implementations are async context managers."""

    name: str

    async def create(self, session_id: str, spec: SessionSpec) -> SandboxHandle:
        """Start a sandbox for a session (a cold start): prestart, then claim."""
        handle = await self.prestart(spec)
        try:
            return await self.claim(handle, session_id, spec)
        except BaseException:
            await self.destroy(handle)
            raise

    @abc.abstractmethod
    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        """Start an unclaimed sandbox whose executor answers before this returns (warm pools)."""

    async def claim(self, handle: SandboxHandle, session_id: str, spec: SessionSpec) -> SandboxHandle:
        """Bind a prestarted sandbox to a session: its env, workdir and default timeouts."""
        claimed = await claim_executor(self.client(handle), handle, session_id, spec, self.claim_workdir(handle, spec))
        save_handle(self.sandbox_dir(claimed), claimed)
        return claimed

    def client(self, handle: SandboxHandle) -> ExecutorClient:
        """The worker's channel to the sandbox's executor (backends add their checks of the peer)."""
        return ExecutorClient(key=handle.key, socket_path=handle.socket_path, host=handle.host, port=handle.port)

    async def inventory(self) -> list[SandboxHandle]:
        """Every sandbox of this worker that left a trace, alive or not (dead ones are for the
        sweeper and for reconciling the registry after a restart); default: ``list()``."""
        return await self.list()

    def claim_workdir(self, handle: SandboxHandle, spec: SessionSpec) -> str:
        """Where a claimed session's shells start, as the executor sees the path."""
        return spec.workdir or handle.workdir

    def sandbox_dir(self, handle: SandboxHandle) -> Path:
        """The sandbox's directory on the worker's host (its handle file lives there)."""
        raise NotImplementedError

    async def images_present(self) -> list[str]:
        """Sandbox images this backend's host already has (placement prefers such workers)."""
        return []

    can_keep = False
    can_persist = False
    """Whether ``persistent`` (a workspace outliving the sandbox's processes) is supported."""
    can_place = False
    """Whether ``placement`` (node selector, tolerations, runtime class) means anything here."""
    """Whether ``keep`` (stop but do not remove a closed session's sandbox) is supported."""

    async def recreate(self, handle: SandboxHandle, spec: SessionSpec) -> SandboxHandle:
        """A new sandbox for a ``persistent`` session whose sandbox died, on the same workspace
        (backends with ``can_persist``); the worker then serves the session on it again."""
        raise BackendError(f"the {self.name} backend cannot re-create a sandbox on its workspace", "unsupported")

    async def keep(self, handle: SandboxHandle) -> None:
        """Stop every process of the sandbox and keep its files (and container) for inspection."""
        raise BackendError(f"the {self.name} backend cannot keep sandboxes", "unsupported")

    allowed_mounts: tuple[str, ...] = ()
    """Host directories sessions may mount (set by the worker from ``--allow-mount``); none by default."""

    def check_mounts(self, spec: SessionSpec) -> None:
        """Every mount's source must lie under an allowed root; targets are absolute and plain."""
        for mount in spec.mounts:
            source = os.path.realpath(mount.source)
            if not any(source == root or source.startswith(root.rstrip("/") + "/")
                       for root in map(os.path.realpath, self.allowed_mounts)):
                allowed = ", ".join(self.allowed_mounts) or "none (start the worker with --allow-mount DIR)"
                raise BackendError(f"mount source {mount.source!r} is not under an allowed root ({allowed})", "invalid_spec")
            if not os.path.isdir(source):
                raise BackendError(f"mount source {mount.source!r} is not a directory on the worker's host", "invalid_spec")
            if not mount.target.startswith("/") or "/../" in mount.target + "/" or mount.target.rstrip("/") in ("", "/proc", "/dev", "/sys"):
                raise BackendError(f"mount target {mount.target!r} must be an absolute path outside /proc, /dev and /sys",
                                   "invalid_spec")

    def validate(self, spec: SessionSpec) -> None:
        """Raise BackendError(invalid_spec) for what this backend cannot give the session."""
        self.check_mounts(spec)
        if spec.keep and not self.can_keep:
            raise BackendError(f"the {self.name} backend cannot keep a closed session's sandbox", "invalid_spec")
        if spec.persistent and not self.can_persist:
            raise BackendError(f"the {self.name} backend has no persistent workspace (persistent=true needs "
                               "the kubernetes backend's PVC workspace)", "invalid_spec")
        if spec.placement is not None and spec.placement != Placement() and not self.can_place:
            raise BackendError(f"the {self.name} backend places no pods: placement (node_selector, tolerations, "
                               "runtime_class) needs the kubernetes backend", "invalid_spec")
        if spec.isolation not in (None, "default"):
            raise BackendError(f"the {self.name} backend offers no isolation={spec.isolation!r} "
                               "(gvisor needs the docker backend on an engine with runsc)", "invalid_spec")

    def pool_key(self, spec: SessionSpec) -> str | None:
        """Sandboxes prestarted for one key can serve any spec with that key; None: never pooled."""
        return None

    @abc.abstractmethod
    async def destroy(self, handle: SandboxHandle) -> None:
        """Stop and remove the sandbox; idempotent."""

    @abc.abstractmethod
    async def list(self) -> list[SandboxHandle]:
        """Sandboxes of this worker that still exist (for re-adoption after a restart)."""

    @abc.abstractmethod
    async def alive(self, handle: SandboxHandle) -> str | None:
        """None if the sandbox is running, else why not (e.g. 'exited with code 137')."""

    async def prepare(self, progress: Callable[[str], None] | None = None) -> None:
        """Get ready to start sandboxes (reach the engine, build a missing image), reporting progress.

        Called once when a worker starts, so a broken set-up fails there with a clear error
        rather than at the first session."""

    async def pause(self, handle: SandboxHandle) -> None:
        """Freeze every process of the sandbox (a real freeze, not a stop)."""
        raise BackendError(f"the {self.name} backend cannot pause sandboxes", "unsupported")

    async def resume(self, handle: SandboxHandle) -> None:
        """Thaw a paused sandbox."""
        raise BackendError(f"the {self.name} backend cannot resume sandboxes", "unsupported")

    async def aclose(self) -> None:
        """Release the backend's own resources (not the sandboxes)."""

    async def __aenter__(self) -> "Backend":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def claim_executor(client: ExecutorClient, handle: SandboxHandle, session_id: str, spec: SessionSpec,
                         workdir: str) -> SandboxHandle:
    """Bind the sandbox's executor to a session (POST /v1/claim); the handle as it is now claimed.

    Shared by every backend: only where the executor listens and which workdir it gets differ
    (an empty one: the executor's choice, as its answer says). Closes ``client``."""
    try:
        health = await client.claim(Claim(session_id=session_id, env={**spec.env, **spec.secrets}, workdir=workdir, default_timeout_s=spec.timeout_s,
                                 default_soft_timeout_s=spec.soft_timeout_s, plugins=list(spec.plugins)))
    except ExecutorUnavailable as exc:
        code = "invalid_spec" if "workdir" in str(exc) or "unknown plugin" in str(exc) else "sandbox_failed"
        raise BackendError(f"the sandbox refused the session: {exc}", code) from exc
    finally:
        await client.aclose()
    return msgspec.structs.replace(handle, session_id=session_id, workdir=workdir or health.workdir, labels=dict(spec.labels),
                                   created_at=time.time(), keep=spec.keep, secrets=dict(spec.secrets))
