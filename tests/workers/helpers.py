"""What several worker tests share: a worker in a process of its own, and a ledger of final answers."""

from __future__ import annotations

import asyncio
from collections import Counter
import sys

import msgspec

from protocol import INTERIM_KINDS, decode_observation, wants_json


async def start_worker_process(url: str, base_dir: object, worker_id: str = "wk", *extra: str) -> asyncio.subprocess.Process:
    """``corral worker`` as a real process (so a test can SIGKILL it); returns once it serves."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "worker", "--nats", url, "--worker-id", worker_id,
        "--base-dir", str(base_dir), "--warm-pool", "0", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=None,
    )
    line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
    assert f"corral worker {worker_id}".encode() in line, line
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


class FinalLedger:
    """Every final observation of one session as it is published: how many each action got."""

    def __init__(self) -> None:
        self.finals: dict[str, list[object]] = {}
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Event()
        self._sub = None

    async def watch(self, nc, subjects, session_id: str) -> FinalLedger:  # type: ignore[no-untyped-def]
        self._sub = await nc.subscribe(subjects.observations(session_id), cb=self._on_obs)
        return self

    async def _on_obs(self, msg) -> None:  # type: ignore[no-untyped-def]
        try:
            obs = decode_observation(msg.data, json=wants_json(msg.headers))
        except msgspec.DecodeError:
            return
        if obs.__struct_config__.tag in INTERIM_KINDS or obs.cause is None:
            return
        self.finals.setdefault(obs.cause, []).append(obs)
        self.counts[obs.cause] += 1
        self._changed.set()

    async def wait_for(self, causes, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        async def all_in() -> None:
            while not all(c in self.counts for c in causes):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(all_in(), timeout_s)

    async def aclose(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
