"""Placement: which worker gets a new session, and the first-come-first-served wait when all are full.

Among workers with room, prefer one that has a warm sandbox and the image, then the least loaded;
with many workers only a random few are compared (best of K), which keeps placement O(1) and
spreads a burst of creates instead of piling them on one worker. A start is counted against its
worker at once (its next heartbeat may be seconds away) and released when the worker answers.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import msgspec

from protocol import ErrorReply, SessionSpec, WorkerInfo, codes


class Placement:
    def __init__(self, *, choices: int, queue_timeout_s: float) -> None:
        self.backlog: Any = None
        """A ``CreateBacklog`` (set once the broker is up): every queued create is counted in it."""
        self.workers: dict[str, WorkerInfo] = {}
        self.seen: dict[str, float] = {}
        """Worker id -> when this controller last heard from it (its own clock)."""
        self._choices = choices
        self._queue_timeout_s = queue_timeout_s
        self._queue: list[object] = []
        self._room = asyncio.Condition()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def heard(self, info: WorkerInfo) -> None:
        self.workers[info.worker_id] = info
        self.seen[info.worker_id] = time.time()

    def forget(self, worker_id: str) -> None:
        self.workers.pop(worker_id, None)
        self.seen.pop(worker_id, None)

    def place(self, spec: SessionSpec, shunned: set[str]) -> WorkerInfo | ErrorReply | None:
        """The best worker for ``spec``; an ErrorReply when none could ever take it; None when all are full."""
        wanted = spec.backend if spec.backend not in (None, "auto") else None
        able = [w for w in self.workers.values()
                if not w.draining and w.worker_id not in shunned and (wanted is None or w.backend == wanted)]
        if not able:
            return self._why_none(wanted, shunned)
        candidates = [w for w in able if w.running + w.starting < w.capacity]
        if not candidates:
            return None
        if len(candidates) > self._choices:
            candidates = random.sample(candidates, self._choices)

        def score(w: WorkerInfo) -> tuple[bool, bool, float, int]:
            has_image = spec.image is None or spec.image in w.images
            return (not w.warm, not has_image, (w.running + w.starting) / max(w.capacity, 1), w.running)

        return min(candidates, key=score)

    def _why_none(self, wanted: str | None, shunned: set[str]) -> ErrorReply:
        if not self.workers:
            return ErrorReply(code=codes.NO_WORKERS, message="no worker is registered (start one with `corral worker`)")
        if wanted and not any(w.backend == wanted for w in self.workers.values()):
            have = sorted({w.backend for w in self.workers.values()})
            return ErrorReply(code=codes.BACKEND_UNAVAILABLE,
                              message=f"no worker runs backend {wanted!r} (available: {', '.join(have)})")
        if shunned:
            return ErrorReply(code=codes.WORKER_UNAVAILABLE, message=(
                f"worker {', '.join(sorted(shunned))} went silent while starting this session, and no other "
                "worker can run it"))
        return ErrorReply(code=codes.WORKER_DRAINING, message="every worker that could run this session is draining")

    def reserve(self, spec: SessionSpec, shunned: set[str]) -> WorkerInfo | ErrorReply | None:
        """Place, and count the start against the worker at once."""
        placed = self.place(spec, shunned)
        if isinstance(placed, WorkerInfo):
            placed = msgspec.structs.replace(placed, starting=placed.starting + 1, warm=max(placed.warm - 1, 0))
            self.workers[placed.worker_id] = placed
        return placed

    def release(self, worker_id: str, *, started: bool) -> None:
        """A start placed on ``worker_id`` ended (``started``: it now runs one more session)."""
        current = self.workers.get(worker_id)
        if current is not None:
            self.workers[worker_id] = msgspec.structs.replace(
                current, starting=max(current.starting - 1, 0), running=current.running + int(started))

    async def reserve_or_wait(self, spec: SessionSpec, deadline: float, shunned: set[str]) -> WorkerInfo | ErrorReply:
        """Place now, or queue first come, first served until a worker has room (bounded wait)."""
        if not self._queue:
            placed = self.reserve(spec, shunned)
            if placed is not None:
                return placed
        ticket = object()
        self._queue.append(ticket)
        counted = await self.backlog.enter(spec.backend or "any") if self.backlog is not None else None
        try:
            async with self._room:
                while True:
                    if self._queue[0] is ticket:
                        placed = self.reserve(spec, shunned)
                        if placed is not None:
                            return placed
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return ErrorReply(code=codes.NO_CAPACITY, message=(
                            f"every worker is at capacity; waited {self._queue_timeout_s:.0f} s in a queue "
                            f"of {len(self._queue)} for a free slot"))
                    try:
                        await asyncio.wait_for(self._room.wait(), remaining)
                    except TimeoutError:
                        pass
        finally:
            self._queue.remove(ticket)
            if self.backlog is not None:
                await self.backlog.leave(counted)
            await self.room_changed()

    async def room_changed(self) -> None:
        async with self._room:
            self._room.notify_all()
