"""One session's book of answers: which action ids have a final observation, and what it was.

An action id executes at most once per session, and every action message gets exactly one final
answer. The book tells the two cases of a known id apart: the same message delivered again (after
an ack wait or a worker restart: acked silently, it was answered) and a new message repeating the
id (answered with the stored observation, never run again).

It keeps every answered id with the stream sequence of its observation (a few dozen bytes each),
and the encoded observations themselves only up to a byte budget: an older one is read back from
the stream, which holds every final observation.
"""

from __future__ import annotations

from collections import OrderedDict

import nats.errors
from nats.js import JetStreamContext
import nats.js.errors

from protocol import decode_observation, encode, wants_json

DEFAULT_CACHE_BYTES = 2 * 2**20


class AnswerBook:
    def __init__(self, js: JetStreamContext, stream: str, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._js = js
        self._stream = stream
        self._obs_seq: dict[str, int] = {}
        """Action id -> stream sequence of its final observation (0 while the stream has not confirmed it)."""
        self._action_seq: dict[str, int] = {}
        """Action id -> stream sequence of the action message that was answered."""
        self._cache: OrderedDict[str, tuple[bytes, bool]] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self.horizon = 0
        """After a restart: action messages up to this stream sequence were seen by the old worker."""

    def __contains__(self, action_id: str) -> bool:
        return action_id in self._obs_seq

    def is_redelivery(self, action_id: str, action_seq: int | None) -> bool:
        """Is this the very message that was answered (delivered again), rather than a repeat?"""
        if action_seq is None:
            return False
        return action_seq == self._action_seq.get(action_id) or action_seq <= self.horizon

    def record(self, action_id: str, action_seq: int | None, data: bytes, as_json: bool) -> None:
        """An answer was published (its stream confirmation may still be on its way)."""
        self._obs_seq.setdefault(action_id, 0)
        if action_seq is not None:
            self._action_seq[action_id] = action_seq
        self._remember(action_id, data, as_json)

    def confirmed(self, action_id: str, obs_seq: int) -> None:
        self._obs_seq[action_id] = obs_seq

    def recovered(self, answered: dict[str, int], horizon: int) -> None:
        """What the stream says was answered before this worker took over."""
        for action_id, seq in answered.items():
            self._obs_seq.setdefault(action_id, seq)
        self.horizon = horizon

    def _remember(self, action_id: str, data: bytes, as_json: bool) -> None:
        old = self._cache.pop(action_id, None)
        if old is not None:
            self._cache_bytes -= len(old[0])
        if len(data) > self._cache_limit:
            return
        self._cache[action_id] = (data, as_json)
        self._cache_bytes += len(data)
        while self._cache_bytes > self._cache_limit:
            _, (evicted, _) = self._cache.popitem(last=False)
            self._cache_bytes -= len(evicted)

    async def stored(self, action_id: str, *, as_json: bool) -> bytes | None:
        """The answer of an action id, encoded as asked; None if unknown or no longer stored."""
        cached = self._cache.get(action_id)
        if cached is None:
            cached = await self._from_stream(action_id)
            if cached is None:
                return None
        data, stored_json = cached
        if stored_json == as_json:
            return data
        return encode(decode_observation(data, json=stored_json), json=as_json)

    async def _from_stream(self, action_id: str) -> tuple[bytes, bool] | None:
        seq = self._obs_seq.get(action_id)
        if not seq:
            return None
        try:
            msg = await self._js.get_msg(self._stream, seq)
        except (nats.js.errors.NotFoundError, nats.errors.Error):
            return None
        return msg.data or b"", wants_json(msg.headers)

    def statistics(self) -> dict[str, int]:
        return {"answered": len(self._obs_seq), "cached": len(self._cache), "cached_bytes": self._cache_bytes}
