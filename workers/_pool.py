"""Warm pools: prestarted, unclaimed sandboxes, so a session starts by claiming one.

One queue per pool key (the backend decides which specs can share a sandbox, e.g. same image,
resources and network); env, workdir and timeouts are applied at claim, so they never force a
cold start. Refills run in the background under the worker's start semaphore.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog

from protocol import SessionSpec

from .backends import Backend, BackendError, SandboxHandle

log = structlog.get_logger()


class WarmPool:
    def __init__(self, backend: Backend, size: int, start_slots: asyncio.Semaphore) -> None:
        self._backend = backend
        self._size = size
        self._slots = start_slots
        self._ready: dict[str, deque[SandboxHandle]] = {}
        self._starting: dict[str, int] = {}
        self._specs: dict[str, SessionSpec] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def prime(self, spec: SessionSpec) -> None:
        """Start filling the pool that serves ``spec``."""
        key = self._backend.pool_key(spec)
        if key is not None and self._size > 0:
            self._specs.setdefault(key, spec)
            self._refill(key)

    def take(self, spec: SessionSpec) -> SandboxHandle | None:
        """A warm sandbox for ``spec``, or None (the caller starts one cold).

        It does not refill: starting a sandbox forks, which would stall the claim in progress.
        The caller primes the pool again once its session is answered."""
        key = self._backend.pool_key(spec)
        if key is None or self._size <= 0:
            return None
        self._specs.setdefault(key, spec)
        queue = self._ready.get(key)
        return queue.popleft() if queue else None

    def sandbox_ids(self) -> set[str]:
        return {h.sandbox_id for q in self._ready.values() for h in q}

    def statistics(self) -> dict[str, int]:
        return {key: len(q) for key, q in self._ready.items()}

    def _refill(self, key: str) -> None:
        while not self._closed and len(self._ready.get(key, ())) + self._starting.get(key, 0) < self._size:
            self._starting[key] = self._starting.get(key, 0) + 1
            task = asyncio.create_task(self._start_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_one(self, key: str) -> None:
        try:
            async with self._slots:
                handle = await self._backend.prestart(self._specs[key])
        except BackendError as exc:
            # No retry loop here: the next take() tries again, and a cold start reports the error.
            log.warning("warm_pool_start_failed", pool=key, error=str(exc))
            return
        finally:
            self._starting[key] -= 1
        if self._closed:
            await self._backend.destroy(handle)
            return
        self._ready.setdefault(key, deque()).append(handle)

    async def aclose(self) -> None:
        """Remove the warm sandboxes. Starts in flight are awaited, not cancelled: a start cut
        short leaves a process behind that nobody has a handle for; a finished one is removed."""
        self._closed = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        handles = [h for q in self._ready.values() for h in q]
        self._ready.clear()
        await asyncio.gather(*(self._backend.destroy(h) for h in handles), return_exceptions=True)
