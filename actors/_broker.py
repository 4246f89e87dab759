"""JetStream set-up shared by every process: the CORRAL stream and the KV buckets."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
import nats.js.errors
from nats.js.kv import KeyValue

from protocol import KV_SESSIONS, KV_WORKERS, STREAM, Subjects

T = TypeVar("T")
API_AWAY_S = 2.0
"""How long a JetStream API call is retried while the API does not answer (503)."""


class StreamConfigOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retention of the CORRAL stream (every action and observation of every session)."""

    max_age_s: float = 7 * 24 * 3600
    max_bytes: int = 4 * 2**30
    """The stream's size cap (oldest messages go first); -1 for none."""
    duplicate_window_s: float = 120.0
    storage: str = "file"
    chunk_ttl_s: float = 3600.0
    """How long streamed ``cmd_chunk`` observations stay in the stream (per-message TTL): they are
    for live watchers; the final observation keeps the result for the full retention."""


async def ensure_stream(js: JetStreamContext, subjects: Subjects, options: StreamConfigOptions | None = None) -> None:
    options = options or StreamConfigOptions()
    config = StreamConfig(
        name=stream_name(subjects),
        subjects=subjects.stream_subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE if options.storage == "file" else StorageType.MEMORY,
        max_age=options.max_age_s,
        max_bytes=options.max_bytes,
        duplicate_window=options.duplicate_window_s,
        discard=DiscardPolicy.OLD,
        max_msg_size=-1,
        allow_msg_ttl=True,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


def stream_name(subjects: Subjects) -> str:
    return STREAM if subjects.prefix == "corral" else f"{STREAM}_{subjects.prefix.upper()}"


async def _bucket(js: JetStreamContext, name: str, ttl_s: float | None = None) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=name, history=1, ttl=ttl_s, storage=StorageType.FILE))


async def workers_bucket(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    return await _bucket(js, _kv_name(KV_WORKERS, subjects))


async def sessions_bucket(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    return await _bucket(js, _kv_name(KV_SESSIONS, subjects))


def _kv_name(base: str, subjects: Subjects) -> str:
    return base if subjects.prefix == "corral" else f"{base}_{subjects.prefix}"


async def while_api_away(call: Callable[[], Awaitable[T]], *, away_s: float = API_AWAY_S) -> T:
    """``call()``, again while JetStream's API answers 503 (no responders). A broker whose accounts
    are reloaded (``corral tenant add`` with ``--secure``) drops the API for about 10 ms."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + away_s
    while True:
        try:
            return await call()
        except nats.js.errors.ServiceUnavailableError:
            if loop.time() > give_up:
                raise
            await asyncio.sleep(0.02)
