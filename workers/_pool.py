"""Warm pools: prestarted, unclaimed sandboxes, so a session starts by claiming one.

One queue per pool key (the backend decides which specs can share a sandbox, e.g. same image,
resources and network); env, workdir and timeouts are applied at claim, so they never force a
cold start. Refills run in the background under the worker's start semaphore.

Warm sandboxes cost what running ones cost, so they are bounded: at most ``max_total`` per
worker, never more than the worker has room for (``room()``: capacity minus sessions running and
starting), and keys are kept least-recently-used first: a new key beyond what fits evicts the
oldest key's sandboxes, and a create that finds the worker full evicts a warm sandbox of another
key to make room.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Callable

import structlog

from protocol import SessionSpec

from .backends import Backend, BackendError, SandboxHandle

log = structlog.get_logger()


class WarmPool:
    def __init__(self, backend: Backend, size: int, start_slots: asyncio.Semaphore, *, max_total: int | None = None,
                 room: Callable[[], int] | None = None) -> None:
        self._backend = backend
        self._size = size
        self._max_total = max_total if max_total is not None else max(size * 4, size)
        self._room = room or (lambda: self._max_total)
        self._slots = start_slots
        self._ready: dict[str, deque[SandboxHandle]] = {}
        self._starting: dict[str, int] = {}
        self._specs: OrderedDict[str, SessionSpec] = OrderedDict()
        """Pool keys, least recently used first."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def prime(self, spec: SessionSpec) -> None:
        """Start filling the pool that serves ``spec`` (as far as the bounds allow)."""
        key = self._backend.pool_key(spec)
        if key is not None and self._size > 0:
            self._touch(key, spec)
            self._refill(key)

    def take(self, spec: SessionSpec) -> SandboxHandle | None:
        """A warm sandbox for ``spec``, or None (the caller starts one cold).

        It does not refill: starting a sandbox forks, which would stall the claim in progress.
        The caller primes the pool again once its session is answered."""
        key = self._backend.pool_key(spec)
        if key is None or self._size <= 0:
            return None
        self._touch(key, spec)
        queue = self._ready.get(key)
        return queue.popleft() if queue else None

    def make_room(self, spec: SessionSpec) -> bool:
        """Evict one warm sandbox of another key (the least recently used); True if one was."""
        keep = self._backend.pool_key(spec)
        for key in self._specs:
            if key != keep and self._ready.get(key):
                self._evict(self._ready[key].popleft(), key)
                return True
        return False

    def sandbox_ids(self) -> set[str]:
        return {h.sandbox_id for q in self._ready.values() for h in q}

    def statistics(self) -> dict[str, int]:
        return {key: len(q) for key, q in self._ready.items()}

    @property
    def total(self) -> int:
        """Warm sandboxes ready plus those being started."""
        return sum(len(q) for q in self._ready.values()) + sum(self._starting.values())

    def _touch(self, key: str, spec: SessionSpec) -> None:
        self._specs.setdefault(key, spec)
        self._specs.move_to_end(key)
        max_keys = max(self._max_total // self._size, 1) if self._size > 0 else 1
        while len(self._specs) > max_keys:
            old, _ = self._specs.popitem(last=False)
            for handle in self._ready.pop(old, ()):
                self._evict(handle, old)

    def _evict(self, handle: SandboxHandle, key: str) -> None:
        log.info("warm_sandbox_evicted", pool=key, sandbox_id=handle.sandbox_id)
        self._track(self._backend.destroy(handle))

    def _refill(self, key: str) -> None:
        def wanted() -> bool:
            mine = len(self._ready.get(key, ())) + self._starting.get(key, 0)
            return (not self._closed and mine < self._size and self.total < self._max_total
                    and self.total < self._room())

        while wanted():
            self._starting[key] = self._starting.get(key, 0) + 1
            self._track(self._start_one(key))

    def _track(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_one(self, key: str) -> None:
        try:
            async with self._slots:
                handle = await self._backend.prestart(self._specs.get(key) or SessionSpec())
        except BackendError as exc:
            # No retry loop here: the next take() tries again, and a cold start reports the error.
            log.warning("warm_pool_start_failed", pool=key, error=str(exc))
            return
        finally:
            self._starting[key] -= 1
        if self._closed or key not in self._specs:  # closed, or the key was evicted meanwhile
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
