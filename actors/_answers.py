"""What the stream knows about answers: which actions of a session already have a final observation.

Every final observation is published through JetStream with ``Nats-Msg-Id`` = its own id and
``cause`` = the action's id, so the stream is the durable record of what was answered. A worker
that restarts, a worker that finds a dead sandbox, and a controller abandoning a lost session all
read it before answering, so no action is answered twice, and answer what is left exactly once.
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.aio.client import Client as Nats
import nats.errors
import structlog

from protocol import (
    INTERIM_KINDS,
    OBSERVATION_KINDS,
    ActionDecodeError,
    Error,
    Subjects,
    decode_action,
    decode_observation,
    encode,
    headers_for,
    new_id,
    replay,
    wants_json,
)

log = structlog.get_logger()

FINAL_KINDS = tuple(kind for kind in OBSERVATION_KINDS if kind not in INTERIM_KINDS)
"""Observation kinds that end an action (everything but chunks and holds)."""
CONFIRM_TIMEOUT_S = 5.0
PUBLISH_ATTEMPTS = 5


def final_subjects(subjects: Subjects, session_id: str) -> list[str]:
    return [subjects.obs(session_id, kind) for kind in FINAL_KINDS]


def final_headers(obs_id: str, as_json: bool) -> dict[str, str]:
    """Headers of a final observation: the stream drops a second copy of the same observation."""
    return {**(headers_for(as_json) or {}), "Nats-Msg-Id": obs_id}


async def answered_in_stream(nc: Nats, subjects: Subjects, stream: str, session_id: str, *,
                             since: int = 0) -> dict[str, int]:
    """Action id -> stream sequence of its final observation, for every one stored from ``since``."""
    answered: dict[str, int] = {}
    async for msg in replay(nc, final_subjects(subjects, session_id), since=since, stream=stream):
        try:
            obs = decode_observation(msg.data, json=wants_json(msg.headers))
        except msgspec.DecodeError:
            continue
        if obs.cause:
            answered.setdefault(obs.cause, msg.metadata.sequence.stream)
    return answered


async def publish_confirmed(nc: Nats, subject: str, data: bytes, headers: dict[str, str]) -> int:
    """Publish through JetStream and wait until the stream holds it; returns its sequence.

    Retried with the same ``Nats-Msg-Id`` (the stream keeps one copy) while the stream is briefly
    away; raises the last broker error if it stays away."""
    js = nc.jetstream()
    delay = 0.1
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            ack = await js.publish(subject, data, headers=headers, timeout=CONFIRM_TIMEOUT_S)
            return ack.seq
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.APIError) as exc:
            if attempt == PUBLISH_ATTEMPTS:
                raise
            log.warning("final_publish_retry", subject=subject, attempt=attempt, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


async def answer_unanswered(nc: Nats, subjects: Subjects, stream: str, session_id: str, *, since: int,
                            code: str, reason: str) -> int:
    """Answer, with an ``Error`` of ``code``, every action of the session stored from ``since`` that
    has no final observation in the stream yet; returns how many were answered."""
    if since <= 0:
        return 0
    answered = await answered_in_stream(nc, subjects, stream, session_id, since=since)
    count = 0
    async for msg in replay(nc, subjects.actions(session_id), since=since, stream=stream):
        as_json = wants_json(msg.headers)
        try:
            action_id: str | None = decode_action(msg.data, json=as_json).id
        except ActionDecodeError as exc:
            action_id = exc.action_id
        if action_id is None or action_id in answered:
            continue
        error = Error(id=new_id(), cause=action_id, session_id=session_id, code=code, message=reason)
        answered[action_id] = await publish_confirmed(nc, subjects.obs(session_id, "error"),
                                                      encode(error, json=as_json), final_headers(error.id, as_json))
        count += 1
    return count
