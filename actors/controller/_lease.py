"""Leadership among controllers: a lease in a KV bucket whose entries expire.

Every controller serves control requests (the session registry is KV, watched by all); one at a
time — the holder of the lease — also does what must happen once: reaping idle sessions, noticing
dead workers, abandoning lost sessions, answering actions for unknown sessions. The holder
renews the lease every third of its TTL; if it dies, the entry expires and another takes it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
import nats.js.errors
from nats.js.kv import KeyValue
import structlog

log = structlog.get_logger()

KEY = "controller"


class Lease:
    def __init__(self, js: JetStreamContext, bucket: str, holder: str, *, ttl_s: float) -> None:
        self._js = js
        self._bucket = bucket
        self.holder = holder
        self._ttl_s = ttl_s
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._renewed = 0.0

    @property
    def held(self) -> bool:
        return self._revision is not None

    async def _open(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(self._bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self._js.create_key_value(KeyValueConfig(
                    bucket=self._bucket, history=1, ttl=self._ttl_s, storage=StorageType.MEMORY))
        return self._kv

    async def run(self, on_gain: Callable[[], Awaitable[None]], on_lose: Callable[[], Awaitable[None]]) -> None:
        """Take, keep and, when it slips away, give up the lease, forever."""
        while True:
            try:
                await self.step(on_gain, on_lose)
            except (nats.errors.Error, OSError) as exc:
                log.warning("lease_step_failed", holder=self.holder, error=repr(exc))
                if self.held and time.monotonic() - self._renewed > self._ttl_s:
                    self._revision = None  # could not renew in time: another may hold it now
                    await on_lose()
            await asyncio.sleep(self._ttl_s / 3)

    async def step(self, on_gain: Callable[[], Awaitable[None]], on_lose: Callable[[], Awaitable[None]]) -> None:
        kv = await self._open()
        if self._revision is None:
            try:
                self._revision = await kv.create(KEY, self.holder.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                return  # held by another
            self._renewed = time.monotonic()
            log.info("controller_leading", holder=self.holder)
            await on_gain()
            return
        try:
            self._revision = await kv.update(KEY, self.holder.encode(), last=self._revision)
            self._renewed = time.monotonic()
        except nats.js.errors.KeyWrongLastSequenceError:
            self._revision = None
            log.warning("controller_lease_lost", holder=self.holder)
            await on_lose()

    async def release(self) -> None:
        if self._revision is None or self._kv is None:
            return
        revision, self._revision = self._revision, None
        try:
            await self._kv.delete(KEY, last=revision)
        except (nats.errors.Error, OSError):
            pass
