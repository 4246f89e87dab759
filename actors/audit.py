"""Audit: read every action, observation and status of every session back from the stream."""

from __future__ import annotations

import asyncio
import datetime
from typing import AsyncIterator

import msgspec
from nats.aio.client import Client as Nats
import nats.errors

from protocol import Subjects, replay, wants_json

from ._broker import stream_name


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


_any_mp = msgspec.msgpack.Decoder()
_any_json = msgspec.json.Decoder()


async def records(nc: Nats, subjects: Subjects, *, session_id: str | None = None, follow: bool = False,
                  since_seq: int | None = None, idle_s: float = 0.5) -> AsyncIterator[AuditRecord]:
    """Yield stored records in order; with ``follow``, keep yielding new ones as they arrive."""
    subject = subjects.session(session_id or "*")
    async for msg in replay(nc, subject, since=since_seq or 0, follow=follow, idle_s=idle_s, stream=stream_name(subjects)):
        parsed = subjects.parse_session_subject(msg.subject)
        if parsed is None:
            continue
        try:
            event = (_any_json if wants_json(msg.headers) else _any_mp).decode(msg.data)
        except msgspec.DecodeError:
            event = {"undecodable": msg.data[:200].hex()}
        meta = msg.metadata
        stamp = meta.timestamp
        when = stamp.isoformat() if isinstance(stamp, datetime.datetime) else str(stamp)
        kind = parsed[2] or (event.get("status", "") if isinstance(event, dict) else "")
        yield AuditRecord(seq=meta.sequence.stream, time=when, subject=msg.subject, session_id=parsed[0],
                          channel=parsed[1], kind=kind, event=event if isinstance(event, dict) else {"value": event})


BATCH = 512
GATHER_S = 0.1


class AuditWriter:
    """An observer: appends every stored event of every session to a JSONL file, durably.

    It reads through a durable consumer, so a restarted writer continues where it stopped.
    """

    def __init__(self, nc: Nats, subjects: Subjects, path: str) -> None:
        self._nc = nc
        self._subjects = subjects
        self._path = path
        self._encoder = msgspec.json.Encoder()

    async def run(self) -> None:
        js = self._nc.jetstream()
        sub = await js.pull_subscribe(self._subjects.all_sessions, durable="audit_writer", stream=stream_name(self._subjects))
        with open(self._path, "ab") as out:
            while True:
                try:
                    msgs = await sub.fetch(BATCH, timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue  # nothing new within the second
                lines = []
                for msg in msgs:
                    parsed = self._subjects.parse_session_subject(msg.subject)
                    try:
                        event = (_any_json if wants_json(msg.headers) else _any_mp).decode(msg.data)
                    except msgspec.DecodeError:
                        event = {"undecodable": msg.data[:200].hex()}
                    lines.append(self._encoder.encode({
                        "seq": msg.metadata.sequence.stream, "subject": msg.subject,
                        "session_id": parsed[0] if parsed else None, "event": event,
                    }) + b"\n")
                await asyncio.to_thread(_append, out, b"".join(lines))
                for msg in msgs:
                    await msg.ack()
                if len(msgs) < BATCH:
                    # Caught up: let the next events gather for a moment. One pull request, one file
                    # write and one thread hop per batch, not per event: the audit log trails the stream
                    # by at most this long, and costs the process it shares far less CPU per action.
                    await asyncio.sleep(GATHER_S)


def _append(out: "object", data: bytes) -> None:
    out.write(data)  # type: ignore[attr-defined]
    out.flush()  # type: ignore[attr-defined]
