"""Final observations of one session, confirmed by the stream before their actions are acked.

``send`` never waits: a lane hands over an answer and goes on to its next action. One task
publishes answers in order through JetStream (``publish_async``, so the PubAck of one does not
hold the next); another awaits the confirmations in the same order and only then acks the action
messages. A stream that is briefly away delays acks, never answers: the publish is retried with
the same ``Nats-Msg-Id``, and the stream keeps one copy.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
import structlog

from actors import CONFIRM_TIMEOUT_S, publish_confirmed

log = structlog.get_logger()


class Outgoing(msgspec.Struct, kw_only=True):
    action_id: str | None
    subject: str
    data: bytes
    headers: dict[str, str]
    acks: list[Msg] = []
    """Action messages to ack once the stream holds the answer."""
    copies: list[tuple[bytes, dict[str, str]]] = []
    """The same answer for repeats of the action that asked in another encoding (core published)."""


Confirmed = Callable[[Outgoing, int], Awaitable[None]]


class Outbox:
    def __init__(self, nc: Nats, on_confirmed: Confirmed) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._on_confirmed = on_confirmed
        self._unsent: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._unconfirmed: asyncio.Queue[tuple[Outgoing, asyncio.Future[object] | None]] = asyncio.Queue()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def send(self, item: Outgoing) -> None:
        self._pending += 1
        self._idle.clear()
        self._unsent.put_nowait(item)

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._publish_forever())
            tg.create_task(self._confirm_forever())

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every answer sent so far is confirmed and acked; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def _publish_forever(self) -> None:
        while True:
            item = await self._unsent.get()
            future: asyncio.Future[object] | None
            try:
                future = await self._js.publish_async(item.subject, item.data, headers=item.headers)
            except (nats.errors.Error, OSError) as exc:  # disconnected: the confirmer retries
                log.warning("final_publish_failed", subject=item.subject, error=repr(exc))
                future = None
            for data, headers in item.copies:
                try:
                    await self._nc.publish(item.subject, data, headers=headers)
                except (nats.errors.Error, OSError) as exc:
                    log.warning("final_copy_unpublished", subject=item.subject, error=repr(exc))
            self._unconfirmed.put_nowait((item, future))

    async def _confirm_forever(self) -> None:
        while True:
            item, future = await self._unconfirmed.get()
            seq = await self._confirm(item, future)
            try:
                await self._on_confirmed(item, seq)
            except Exception:  # an ack that fails is redelivered and recognised: never stop confirming
                log.exception("final_confirm_callback_failed", action_id=item.action_id)
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()

    async def _confirm(self, item: Outgoing, future: asyncio.Future[object] | None) -> int:
        if future is not None:
            try:
                if not future.done():  # usually it is: the PubAck came while the action's answer went out
                    async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                        await asyncio.shield(future)
                return int(future.result().seq)  # type: ignore[attr-defined]
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("final_publish_unconfirmed", action_id=item.action_id, error=repr(exc))
        delay = 0.2
        while True:
            try:
                return await publish_confirmed(self._nc, item.subject, item.data, item.headers)
            except (nats.errors.Error, OSError) as exc:
                log.warning("final_publish_retry", action_id=item.action_id, error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
