"""The creates waiting for a free worker, as messages of a JetStream stream, for autoscalers.

KEDA's ``nats-jetstream`` scaler reads the pending count of one durable consumer. corral consumes
actions per session and creates are requests, so no consumer of the CORRAL stream measures "work
waiting for a worker". This does: each create that finds every worker full publishes one message to
``<prefix>.backlog.create`` (stream ``CORRAL_BACKLOG``), and deletes it by sequence when the create is
placed or gives up. The durable consumer ``pending_creates`` is never read, so its pending count is
the number of creates waiting right now — what a scaler should add workers for.

Advisory: a broker error here is logged and never delays or fails a create.
"""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
import nats.js.errors
import structlog

from protocol import Subjects

log = structlog.get_logger()

BACKLOG_STREAM = "CORRAL_BACKLOG"
BACKLOG_CONSUMER = "pending_creates"


def backlog_stream_name(subjects: Subjects) -> str:
    return BACKLOG_STREAM if subjects.prefix == "corral" else f"{BACKLOG_STREAM}_{subjects.prefix.upper()}"


class CreateBacklog:
    def __init__(self, js: JetStreamContext, subjects: Subjects, *, max_age_s: float) -> None:
        self._js = js
        self._subject = f"{subjects.prefix}.backlog.create"
        self.stream = backlog_stream_name(subjects)
        self._max_age_s = max_age_s
        """A message a controller could not delete (it died) goes away on its own after the longest wait."""

    async def start(self) -> None:
        config = StreamConfig(name=self.stream, subjects=[self._subject], retention=RetentionPolicy.LIMITS,
                              storage=StorageType.MEMORY, max_age=self._max_age_s)
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(config)
        await self._js.add_consumer(self.stream, ConsumerConfig(
            durable_name=BACKLOG_CONSUMER, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL))

    async def enter(self, what: str) -> int | None:
        """One more create waits; its message's sequence (None if the broker did not take it)."""
        try:
            return (await self._js.publish(self._subject, what.encode(), stream=self.stream)).seq
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("backlog_publish_failed", error=str(exc))
            return None

    async def leave(self, seq: int | None) -> None:
        if seq is None:
            return
        try:
            await self._js.delete_msg(self.stream, seq)
        except (nats.errors.Error, nats.js.errors.Error) as exc:  # expired already, or the broker is away
            log.debug("backlog_delete_failed", seq=seq, error=str(exc))

    async def pending(self) -> int:
        """What the scaler sees: the consumer's pending count."""
        return (await self._js.consumer_info(self.stream, BACKLOG_CONSUMER)).num_pending
