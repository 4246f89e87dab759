"""The session registry's record (KV ``corral_sessions``) and KV helpers, shared by controller and workers."""

from __future__ import annotations

from typing import Any

import msgspec
import nats.js.errors

from protocol import SessionInfo, SessionSpec


class SessionRecord(msgspec.Struct, kw_only=True):
    """What the registry keeps per session."""

    info: SessionInfo
    spec: SessionSpec
    last_activity: float = 0.0


record_decoder = msgspec.msgpack.Decoder(SessionRecord)


async def kv_items(kv: Any) -> list[tuple[str, bytes]]:
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    items = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue
        if entry.value:
            items.append((key, entry.value))
    return items


async def kv_delete(kv: Any, key: str) -> None:
    try:
        await kv.purge(key)
    except nats.js.errors.KeyNotFoundError:
        pass


async def load_sessions(kv: Any) -> dict[str, SessionRecord]:
    return {key: record_decoder.decode(data) for key, data in await kv_items(kv)}
