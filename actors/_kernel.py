"""The actor kernel: bounded inboxes, supervision with restart and backoff, drain on stop.

An actor is a plain class with private state, an inbox and ``handle(message)``. ``run()``
takes messages one at a time (or up to ``concurrency`` at once), logs one canonical line
per handled message, and survives any exception a message causes. ``Supervisor`` restarts
long-running loops that crash, with exponential backoff, and stops them on request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Generic, TypeVar

import structlog

log = structlog.get_logger()

M = TypeVar("M")


class InboxFull(Exception):
    """The actor's inbox is at capacity: the sender must answer with back-pressure, not block."""


class Actor(Generic[M]):
    """Base class: subclass and implement ``handle`` (and optionally ``describe``)."""

    name = "actor"

    def __init__(self, *, inbox_size: int = 1024, concurrency: int = 1) -> None:
        self._inbox: asyncio.Queue[M] = asyncio.Queue(inbox_size)
        self._concurrency = concurrency
        self._accepting = True
        self._busy = 0
        self._handled = 0
        self._failed = 0

    # -- verbs
    def tell(self, message: M) -> None:
        """Queue a message without waiting; raise InboxFull when at capacity."""
        if not self._accepting:
            raise InboxFull(f"{self.name} is stopping")
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            raise InboxFull(f"{self.name} inbox is full ({self._inbox.maxsize})") from None

    async def handle(self, message: M) -> None:
        raise NotImplementedError

    def describe(self, message: M) -> dict[str, Any]:
        """Key/values bound to the canonical log line of this message."""
        return {}

    def statistics(self) -> dict[str, int]:
        return {"queued": self._inbox.qsize(), "busy": self._busy, "handled": self._handled, "failed": self._failed}

    # -- loop
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self._concurrency):
                tg.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            message = await self._inbox.get()
            self._busy += 1
            started = time.perf_counter()
            try:
                await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed += 1
                log.exception("actor_message_failed", actor=self.name, error=repr(exc), **self.describe(message))
            else:
                self._handled += 1
                log.debug("actor_message_handled", actor=self.name,
                          duration_ms=round((time.perf_counter() - started) * 1000, 3), **self.describe(message))
            finally:
                self._busy -= 1
                self._inbox.task_done()

    async def drain(self, timeout_s: float) -> bool:
        """Stop intake and wait for queued and in-flight messages; True if all finished in time."""
        self._accepting = False
        try:
            await asyncio.wait_for(self._inbox.join(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False


class Supervisor:
    """Runs named loops as child tasks, restarting a crashed one with exponential backoff."""

    def __init__(self, name: str, *, backoff_s: float = 0.1, max_backoff_s: float = 10.0) -> None:
        self.name = name
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, child: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._keep(child, loop), name=f"{self.name}.{child}")
        self._tasks[child] = task
        return task

    async def _keep(self, child: str, loop: Callable[[], Awaitable[None]]) -> None:
        delay = self._backoff_s
        while True:
            started = time.monotonic()
            try:
                await loop()
                return  # a loop that returns has finished its work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts[child] = self.restarts.get(child, 0) + 1
                if time.monotonic() - started > 30:
                    delay = self._backoff_s  # it ran well for a while: start backing off afresh
                log.exception("actor_crashed", supervisor=self.name, child=child, error=repr(exc), restart_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)

    def stop(self, child: str) -> None:
        task = self._tasks.pop(child, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)


async def cancel_and_wait(tasks: "list[asyncio.Task[Any]] | set[asyncio.Task[Any]]", *, attempt_s: float = 1.0,
                          attempts: int = 10) -> None:
    """Cancel tasks and wait until they are done, cancelling again those that survive.

    A library that swallows one ``CancelledError`` (nats-py does, inside a publish that waits to
    flush) would otherwise leave a loop running forever and a close waiting on it."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=attempt_s)
    if pending:
        log.error("tasks_survived_cancellation", tasks=[t.get_name() for t in pending])
