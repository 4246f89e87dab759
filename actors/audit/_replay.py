"""Read every action, observation and status of every session back from the stream (``corral audit tail``)."""

from __future__ import annotations

import datetime
from typing import AsyncIterator

import msgspec
from nats.aio.client import Client as Nats

from protocol import Subjects, replay, wants_json

from .._broker import stream_name


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: str
    subject: str
    session_id: str
    channel: str
    """``action``, ``obs`` or ``status``."""
    kind: str
    # The event itself, as it was published (already a public wire struct; kept generic here).
    event: dict | None
    tenant: str = ""
    """``""`` for the deployment's own sessions."""


_any_mp = msgspec.msgpack.Decoder()
_any_json = msgspec.json.Decoder()


async def records(nc: Nats, subjects: Subjects, *, session_id: str | None = None, follow: bool = False,
                  since_seq: int | None = None, idle_s: float = 0.5) -> AsyncIterator[AuditRecord]:
    """Yield stored records in order, the deployment's own sessions' and every tenant's; with
    ``follow``, keep yielding new ones as they arrive."""
    own = subjects.for_tenant("")
    filters = [own.session(session_id or "*"), own.for_tenant("*").session(session_id or "*")]
    async for msg in replay(nc, filters, since=since_seq or 0, follow=follow, idle_s=idle_s,
                            stream=stream_name(subjects)):
        parsed = own.parse_session_subject(msg.subject)
        if parsed is None:
            continue
        try:
            event = (_any_json if wants_json(msg.headers) else _any_mp).decode(msg.data)
        except (msgspec.DecodeError, RecursionError):
            event = {"undecodable": msg.data[:200].hex()}
        meta = msg.metadata
        stamp = meta.timestamp
        when = stamp.isoformat() if isinstance(stamp, datetime.datetime) else str(stamp)
        kind = parsed[2] or (event.get("status", "") if isinstance(event, dict) else "")
        yield AuditRecord(seq=meta.sequence.stream, time=when, subject=msg.subject, session_id=parsed[0],
                          channel=parsed[1], kind=kind, event=event if isinstance(event, dict) else {"value": event},
                          tenant=own.tenant_of(msg.subject) or "")
