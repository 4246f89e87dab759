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


class SessionTable:
    """A controller's view of the session registry. KV is the source of truth: writes go there,
    and a watch brings every change (by another controller, or a worker) into ``records``.

    What only this controller sees — the last activity it heard of — stays local; a status change
    that starts a clock (``lost``) carries its own time."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv
        self.records: dict[str, SessionRecord] = {}

    async def load(self) -> Any:
        """Read every record, then return a watcher for what changes after (``watch`` runs it)."""
        watcher = await self._kv.watchall()
        while (entry := await watcher.updates(timeout=10)) is not None:
            self._apply(entry)
        return watcher

    async def watch(self, watcher: Any) -> None:
        async for entry in watcher:
            if entry is not None:
                self._apply(entry)

    def _apply(self, entry: Any) -> None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.records.pop(entry.key, None)
            return
        try:
            record = record_decoder.decode(entry.value)
        except msgspec.DecodeError:
            return
        mine = self.records.get(entry.key)
        if mine is not None and record.info.status != "lost":
            record.last_activity = max(record.last_activity, mine.last_activity)
        self.records[entry.key] = record

    def get(self, session_id: str) -> SessionRecord | None:
        return self.records.get(session_id)

    async def put(self, record: SessionRecord) -> None:
        self.records[record.info.session_id] = record
        await self._kv.put(record.info.session_id, msgspec.msgpack.encode(record))

    async def delete(self, session_id: str) -> None:
        self.records.pop(session_id, None)
        await kv_delete(self._kv, session_id)
