"""The audit writer: an observer that appends every stored event of every session to the audit log.

Where it resumes comes from the log, not from the broker: on every (re)start, and after any
broken fetch, the writer re-creates its durable pull consumer at the log's last sequence + 1.
So a crash between the write and the ack duplicates nothing, a batch lost in flight (broker
restart) is fetched again, and an old consumer's filter or position never matters.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Callable

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
import nats.js.errors
import structlog

from protocol import Subjects, wants_json

from .._broker import stream_name
from ._format import AUDIT_STREAM_RESET, AuditError
from ._keys import load_private_key
from ._log import AuditLog, Clock, Incoming, utc_now

log = structlog.get_logger()


class AuditWriterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    directory: str
    """The log directory (one ``audit-YYYY-MM-DD.jsonl`` per UTC day)."""
    key_file: str | None = None
    """An Ed25519 private key (PEM): every record is signed with it."""
    durable: str = "audit_writer"
    """The consumer's name; one per log directory."""
    ack_wait_s: float = 30.0
    batch: int = 512
    gather_s: float = 0.1
    """When caught up, let new events gather this long before the next pull (one write per batch)."""
    fetch_timeout_s: float = 1.0
    retry_s: float = 0.5
    """First pause after a broken fetch (doubling up to 5 s) before the consumer is made again."""


class AuditWriter:
    """``await writer.open()`` (optional: fails fast on a locked or corrupt log), then ``run()``
    under a Supervisor. ``wait_for_seq()`` says when a stream sequence is on disk."""

    def __init__(self, nc: Nats, subjects: Subjects, config: AuditWriterConfig, *, clock: Clock = utc_now) -> None:
        self._nc = nc
        self._subjects = subjects
        self.config = config
        self._key = load_private_key(config.key_file) if config.key_file else None
        self._clock = clock
        self._log: AuditLog | None = None
        self._sub: Any = None
        self._delivered = 0
        self._progress = asyncio.Condition()
        self.last_seq = 0
        self.resets = 0

    async def open(self) -> None:
        if self._log is None:
            audit_log = AuditLog(self.config.directory, self._subjects.for_tenant(""), signing_key=self._key,
                                 clock=self._clock)
            await asyncio.to_thread(audit_log.open)
            self._log = audit_log
            self.last_seq = audit_log.last_seq

    def statistics(self) -> dict[str, object]:
        audit_log = self._log
        return {"last_seq": self.last_seq, "written": audit_log.written if audit_log else 0,
                "skipped": audit_log.skipped if audit_log else 0, "resets": self.resets,
                "head": audit_log.head if audit_log else None, "signed": self._key is not None}

    async def wait_for_seq(self, seq: int, timeout_s: float = 10.0) -> None:
        """Return once every stream message up to ``seq`` the writer receives is in the log."""
        async with asyncio.timeout(timeout_s):
            async with self._progress:
                await self._progress.wait_for(lambda: self.last_seq >= seq)

    async def run(self) -> None:
        await self.open()
        assert self._log is not None
        try:
            await self._subscribe()
            retry_s = self.config.retry_s
            while True:
                try:
                    msgs = await self._sub.fetch(self.config.batch, timeout=self.config.fetch_timeout_s)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue  # nothing new within the timeout
                except nats.errors.Error as exc:
                    # The broker went away or lost the consumer: deliveries may be lost in flight.
                    log.warning("audit_fetch_failed", error=repr(exc), retry_in_s=retry_s)
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, 5.0)
                    await self._resubscribe()
                    continue
                retry_s = self.config.retry_s
                await self._handle(msgs)
                if len(msgs) < self.config.batch:
                    # Caught up: let the next events gather for a moment. One pull request, one file
                    # write and one thread hop per batch, not per event.
                    await asyncio.sleep(self.config.gather_s)
        finally:
            await self._unsubscribe()
            audit_log, self._log = self._log, None
            await asyncio.to_thread(audit_log.close)

    async def _handle(self, msgs: list[Msg]) -> None:
        assert self._log is not None
        batch: list[Incoming] = []
        gap = False
        for msg in msgs:
            meta = msg.metadata
            if self._delivered and meta.sequence.consumer != self._delivered + 1:
                gap = True  # a delivery never reached us: take the rest again from the log's end
                log.warning("audit_delivery_gap", expected=self._delivered + 1, got=meta.sequence.consumer)
                break
            self._delivered = meta.sequence.consumer
            stamp = meta.timestamp
            when = stamp.isoformat() if isinstance(stamp, datetime.datetime) else str(stamp)
            batch.append(Incoming(meta.sequence.stream, when, msg.subject, msg.data, wants_json(msg.headers)))
        if batch:
            await _finish_in_thread(self._log.append, batch)
            await self._written(batch[-1].seq)
            await self._ack(msgs[len(batch) - 1])
        if gap:
            await self._resubscribe()

    async def _written(self, seq: int) -> None:
        async with self._progress:
            self.last_seq = max(self.last_seq, seq)
            self._progress.notify_all()

    async def _ack(self, last: Msg) -> None:
        """Acknowledge a written batch: the consumer acks all (the last message acks the batch)."""
        try:
            await last.ack()
        except nats.errors.Error as exc:
            # A lost ack costs a redelivery, which the log skips (its seq is not above last_seq).
            log.warning("audit_ack_failed", error=repr(exc))

    # ------------------------------------------------------------------ the consumer

    async def _subscribe(self) -> None:
        """(Re)create the durable consumer at the log's last sequence + 1, and bind to it."""
        assert self._log is not None
        js = self._nc.jetstream()
        stream = stream_name(self._subjects)
        info = await js.stream_info(stream)
        last = self._log.last_seq
        if info.state.last_seq < last:
            raise AuditError(AUDIT_STREAM_RESET, f"stream {stream} ends at seq {info.state.last_seq} but the audit "
                             f"log at {self._log.directory} already holds seq {last}: the stream was made anew; "
                             "move the log aside to start a new one")
        if last and info.state.first_seq > last + 1:
            log.warning("audit_gap", missing_from=last + 1, missing_to=info.state.first_seq - 1,
                        reason="the stream dropped these before the writer read them (retention, TTL)")
        try:
            await js.delete_consumer(stream, self.config.durable)
        except nats.js.errors.NotFoundError:
            pass
        start = ({"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": last + 1} if last
                 else {"deliver_policy": DeliverPolicy.ALL})
        await js.add_consumer(stream, ConsumerConfig(
            durable_name=self.config.durable, ack_policy=AckPolicy.ALL, ack_wait=self.config.ack_wait_s,
            max_ack_pending=self.config.batch * 4, filter_subjects=list(self._subjects.stream_subjects), **start))
        self._sub = await js.pull_subscribe_bind(self.config.durable, stream)
        self._delivered = 0
        log.info("audit_consumer_ready", durable=self.config.durable, start_seq=last + 1)

    async def _resubscribe(self) -> None:
        self.resets += 1
        await self._unsubscribe()
        retry_s = self.config.retry_s
        while True:
            try:
                await self._subscribe()
                return
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("audit_consumer_retry", error=repr(exc), retry_in_s=retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, 5.0)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass


async def _finish_in_thread(fn: Callable[..., object], *args: object) -> None:
    """Run ``fn`` in a thread; if cancelled meanwhile, let it finish first (a thread cannot be
    stopped, and the log must not be closed under a write), then pass the cancellation on."""
    done = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        raise
