"""Blocking file work off the event loop, on threads started before anyone needs them.

``asyncio.to_thread`` starts a thread on demand, so after a fork bomb inside the sandbox (no
processes left to make) every file operation failed with "can't start new thread". The executor
starts its threads at startup instead (``start``), hands work to them through a queue, and runs an
operation inline, on the loop, only when no thread exists at all.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

THREADS = 2
"""File operations come from one lane per session (``main``), so one thread is busy at a time;
the second keeps a slow operation (a cancelled edit finishing) from delaying the next."""

_Item = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"] | None


class Offload:
    """A fixed set of worker threads fed by a queue; it never starts a thread while serving."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, threads: int = THREADS) -> int:
        """Start up to ``threads`` worker threads (idempotent); how many there are."""
        with self._lock:
            while len(self._threads) < threads:
                thread = threading.Thread(target=self._work, name=f"corral-file-{len(self._threads)}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # can't start new thread: serve with what there is
                    break
                self._threads.append(thread)
            return len(self._threads)

    @property
    def threads(self) -> int:
        return len(self._threads)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; inline when not even one thread could be started."""
        if not self._threads and not self.start():
            return fn(*args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return await future

    def stop(self) -> None:
        """Let the threads end once the work queued before this is done (idempotent)."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._threads = []

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, loop, future = item
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the operation ran to its end anyway
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


offload = Offload()
"""The executor's one pool; ``Executor.start`` starts its threads."""
