"""The remote backend: executors on machines you bring (a VM, a bare-metal box), claimed as sandboxes.

Each machine runs ``corral-executor --listen tcp://HOST:PORT --key-file F [--tls-cert C --tls-key K]``;
the worker gets their list (``RemoteConfig``). Nothing is started here: an executor is already
warm, so a create is a claim (``POST /v1/claim``, which the executor grants once: two workers
racing for one executor get one 409 and the loser tries the next), and a destroy is a release
(``POST /v1/release``: the executor kills the session's shells and plugins, removes its directories
and waits for the next claim). The handle of a claimed executor is kept under
``<base_dir>/remote/<worker_id>/<sandbox_id>/``, so a restarted worker re-adopts its sessions: the
executor still holds them. An executor that stops answering, or answers for another session, is
not alive, and its session becomes ``lost``.

The isolation is the machine's: the session runs as the executor's user there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import random
import shutil
import ssl
import time
from typing import Callable, NamedTuple

import structlog

from executor.client import ExecutorBusy, ExecutorClient, ExecutorUnavailable, Health, KeyRefused
from protocol import SessionSpec, codes, new_id

from ._base import Backend, BackendError, SandboxHandle, claim_executor, load_handles, save_handle
from ._remote_config import RemoteConfig, RemoteExecutor, load_executors, read_key

log = structlog.get_logger()


class _Target(NamedTuple):
    """One executor as this backend reaches it: its address, key and TLS context."""

    executor: RemoteExecutor
    key: str
    tls: ssl.SSLContext | None


class RemoteBackend(Backend):
    name = "remote"

    def __init__(self, *, base_dir: str, worker_id: str, config: RemoteConfig) -> None:
        self._root = Path(base_dir) / "remote" / worker_id
        self._root.mkdir(parents=True, exist_ok=True)
        self._worker_id = worker_id
        self._timeout_s = config.health_timeout_s
        self._targets = {(e.host, e.port): _Target(executor=e, key=read_key(e), tls=_tls(e))
                         for e in load_executors(config)}
        self._reserved: set[tuple[str, int]] = set()
        """Executors handed out by ``prestart`` and not yet claimed or destroyed (never handed out twice)."""

    # ------------------------------------------------------------------ channel

    def client(self, handle: SandboxHandle) -> ExecutorClient:
        target = self._targets.get((handle.host, handle.port or 0))
        if target is None:
            return ExecutorClient(key=handle.key, connect=_gone(handle))
        return self._client(target)

    def _client(self, target: _Target) -> ExecutorClient:
        e = target.executor
        return ExecutorClient(key=target.key, host=e.host, port=e.port, ssl=target.tls,
                              server_hostname=e.server_name if target.tls is not None else None)

    async def _health(self, target: _Target) -> tuple[Health | None, str, bool]:
        """(health, why not, whether the reason is our configuration: a wrong key or certificate)."""
        client = self._client(target)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await client.health(), "", False
        except KeyRefused:
            return None, f"refused the key in {target.executor.key_file} (401)", True
        except TimeoutError:
            return None, f"no answer within {self._timeout_s:g}s", False
        except ExecutorUnavailable as exc:
            return None, str(exc), isinstance(exc.__cause__, ssl.SSLError)
        finally:
            await client.aclose()

    # ------------------------------------------------------------------ lifecycle

    def validate(self, spec: SessionSpec) -> None:
        if spec.mounts:
            raise BackendError("the remote backend mounts nothing: a remote executor sees its own machine's "
                               "files, not the worker's host", codes.INVALID_SPEC)
        super().validate(spec)

    def pool_key(self, spec: SessionSpec) -> str | None:
        return None  # executors are warm already: a claim is the warm path, a pool would only hoard them

    async def prepare(self, progress: Callable[[str], None] | None = None) -> None:
        """Ask every executor once; refuse to start when none accepts our key and certificates."""
        answers = await asyncio.gather(*(self._health(t) for t in self._targets.values()))
        for target, (health, reason, _) in zip(self._targets.values(), answers):
            state = reason if health is None else f"serves session {health.session_id}" if health.session_id else "free"
            log.info("remote_executor_checked", address=target.executor.address, state=state)
            if progress is not None:
                progress(f"remote executor {target.executor.address}: {state}")
        if all(misconfigured for _, _, misconfigured in answers):
            raise BackendError("no remote executor accepts this worker: " + "; ".join(
                f"{t.executor.address}: {reason}" for t, (_, reason, _) in zip(self._targets.values(), answers)),
                codes.SANDBOX_FAILED)

    async def prestart(self, spec: SessionSpec, skip: frozenset[tuple[str, int]] = frozenset()) -> SandboxHandle:
        """A free executor (answering, unclaimed), reserved for this backend until claimed or destroyed."""
        reasons: list[str] = []
        misconfigured = 0
        order = list(self._targets.items())
        random.shuffle(order)  # workers sharing one list do not all race for its first executor
        for where, target in order:
            if where in self._reserved or where in skip:
                continue
            self._reserved.add(where)  # before the await: a concurrent prestart skips it
            health, reason, ours = await self._health(target)
            if health is not None and not health.session_id:
                return SandboxHandle(sandbox_id="r" + new_id(), session_id="", worker_id=self._worker_id,
                                     backend=self.name, key=target.key, host=where[0], port=where[1], pid=health.pid,
                                     created_at=time.time())
            self._reserved.discard(where)
            reasons.append(f"{target.executor.address}: {reason or 'serves session ' + health.session_id}")  # type: ignore[union-attr]
            misconfigured += ours
        code = codes.SANDBOX_FAILED if reasons and misconfigured == len(reasons) else codes.NO_CAPACITY
        raise BackendError(f"no free remote executor among {len(self._targets)}: " + ("; ".join(reasons) or
                           "every one is being claimed by this worker"), code)

    async def create(self, session_id: str, spec: SessionSpec) -> SandboxHandle:
        """Claim a free executor; one that another worker claimed first (409) is passed over."""
        taken: set[tuple[str, int]] = set()
        while True:
            handle = await self.prestart(spec, frozenset(taken))
            try:
                return await self.claim(handle, session_id, spec)
            except BackendError as exc:
                if not isinstance(exc.__cause__, ExecutorBusy):
                    raise
                taken.add((handle.host, handle.port or 0))
                log.info("remote_executor_taken", address=f"{handle.host}:{handle.port}", session_id=session_id)

    async def claim(self, handle: SandboxHandle, session_id: str, spec: SessionSpec) -> SandboxHandle:
        try:
            claimed = await claim_executor(self.client(handle), handle, session_id, spec, self.claim_workdir(handle, spec))
        finally:
            self._reserved.discard((handle.host, handle.port or 0))
        self.sandbox_dir(claimed).mkdir(mode=0o700, parents=True, exist_ok=True)
        save_handle(self.sandbox_dir(claimed), claimed)
        log.info("remote_executor_claimed", address=f"{handle.host}:{handle.port}", session_id=session_id,
                 sandbox_id=handle.sandbox_id)
        return claimed

    def claim_workdir(self, handle: SandboxHandle, spec: SessionSpec) -> str:
        return spec.workdir or ""  # empty: the executor's own fresh directory for the session

    def sandbox_dir(self, handle: SandboxHandle) -> Path:
        return self._root / handle.sandbox_id

    async def destroy(self, handle: SandboxHandle) -> None:
        """Release the executor (if it still serves this session) and forget the handle; idempotent."""
        self._reserved.discard((handle.host, handle.port or 0))
        if handle.session_id:
            client = self.client(handle)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await client.release(handle.session_id)
            except ExecutorBusy:
                pass  # released before, and claimed by another session since
            except (ExecutorUnavailable, TimeoutError) as exc:
                log.warning("remote_release_failed", address=f"{handle.host}:{handle.port}",
                            session_id=handle.session_id, error=str(exc) or "timeout")
            finally:
                await client.aclose()
        await asyncio.to_thread(shutil.rmtree, self.sandbox_dir(handle), True)

    async def inventory(self) -> list[SandboxHandle]:
        return await asyncio.to_thread(load_handles, self._root)

    async def list(self) -> list[SandboxHandle]:
        return [h for h in await self.inventory() if await self.alive(h) is None]

    async def alive(self, handle: SandboxHandle) -> str | None:
        target = self._targets.get((handle.host, handle.port or 0))
        if target is None:
            return f"executor {handle.host}:{handle.port} is no longer in the executors file"
        health, reason, _ = await self._health(target)
        if health is None:
            return f"executor {target.executor.address} does not answer: {reason}"
        if health.session_id != handle.session_id:
            now = f"session {health.session_id}" if health.session_id else "no session"
            return f"executor {target.executor.address} now serves {now}" + (
                f" (it was restarted: pid {health.pid}, not {handle.pid})" if handle.pid and health.pid != handle.pid else "")
        return None


def _tls(executor: RemoteExecutor) -> ssl.SSLContext | None:
    """A client context trusting only the executor's CA (certificate and name verified), or None."""
    if executor.ca_file is None:
        return None
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=executor.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise BackendError(f"remote executor {executor.address}: cannot load its CA file {executor.ca_file}: {exc}",
                           codes.INVALID_SPEC) from None


def _gone(handle: SandboxHandle):  # type: ignore[no-untyped-def]
    async def connect():  # type: ignore[no-untyped-def]
        raise ExecutorUnavailable(f"executor {handle.host}:{handle.port} is no longer in the executors file")

    return connect
