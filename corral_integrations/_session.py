"""What every adapter shares: the broker address, the session spec from keyword arguments, and a
corral session that synchronous framework code can drive (mini-swe-agent and OpenHands call their
sandboxes from plain threads; SWE-ReX is async and uses ``protocol.Client`` directly)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Awaitable, Callable, TypeVar

import msgspec

from protocol import AnyAction, AnyObservation, Client, Session, SessionSpec

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
NATS_URL_ENV = "CORRAL_NATS_URL"

T = TypeVar("T")


def resolve_nats_url(nats_url: str | None = None) -> str:
    """``nats_url`` if given, else ``$CORRAL_NATS_URL``, else the local default."""
    return nats_url or os.environ.get(NATS_URL_ENV) or DEFAULT_NATS_URL


def session_spec(**fields: Any) -> SessionSpec:
    """A ``SessionSpec`` from keyword arguments; an unknown or mistyped field is a ``ValueError``
    naming it (so a typo in a framework's config fails at start, not as a silently ignored key)."""
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, SessionSpec)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid corral session spec: {exc}") from None


class LoopThread:
    """An asyncio event loop on its own daemon thread; ``run`` blocks the calling thread only."""

    def __init__(self, name: str = "corral-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop (it would deadlock)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        """Cancel what is still running on the loop (a connection's background tasks), then stop it."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                self.run(_cancel_others(), timeout=10)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class BlockingSession:
    """One corral session for synchronous code: created on construction, ``close()`` ends it.

    ``run(action)`` publishes an action and returns its final observation; ``call(fn, ...)`` runs
    any coroutine function of the async ``Session`` on the background loop."""

    def __init__(self, nats_url: str | None = None, *, creds: str | None = None,
                 spec: SessionSpec | None = None, **fields: Any) -> None:
        self.spec = spec or session_spec(**fields)
        self.nats_url = resolve_nats_url(nats_url)
        self._loop = LoopThread()
        try:
            self.client: Client = self._loop.run(Client.connect(self.nats_url, creds=creds))
            self.session: Session = self._loop.run(
                self.client.create_session(**msgspec.structs.asdict(self.spec)))
        except BaseException:
            self._shutdown_client()
            raise
        self._closed = False

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def run(self, action: AnyAction, *, wait_s: float | None = None) -> AnyObservation:
        return self._loop.run(self.session.run(action, wait_s=wait_s))

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self._loop.run(fn(*args, **kwargs))

    def close(self) -> None:
        """Close the session (its sandbox goes away) and the connection; safe to call twice."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._loop.run(self.session.close(), timeout=60)
        finally:
            self._shutdown_client()

    def _shutdown_client(self) -> None:
        client = getattr(self, "client", None)
        try:
            if client is not None:
                self._loop.run(client.aclose(), timeout=10)
        finally:
            self._loop.close()

    def __enter__(self) -> BlockingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
