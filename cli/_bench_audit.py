"""``corral bench --audit``: how fast the audit writer drains the stream, without and with signatures.

Publishes N real session events (``cmd_run`` actions and their ``cmd_output`` answers, in a few
sessions) into the stream of a private embedded broker first, then times an audit writer from
its start until every one of them is on disk (one write and one fsync per batch), once unsigned
and once signing every record with a fresh Ed25519 key; and ``verify`` of the signed log.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import tempfile
import time

from nats.aio.client import Client as Nats

from actors import ensure_stream
from actors.audit import AuditWriter, AuditWriterConfig, generate_key_pair, load_public_key, verify_log
from actors.embedded import EmbeddedNats
from protocol import CmdOutput, CmdRun, Subjects, connect_nats, encode, new_id


async def audit_bench(records: int) -> dict[str, object]:
    subjects = Subjects()
    with tempfile.TemporaryDirectory(prefix="corral-bench-audit-") as tmp:
        root = Path(tmp)
        async with EmbeddedNats(str(root / "nats")) as server:
            nc = await connect_nats(server.url, name="corral-bench-audit")
            try:
                js = nc.jetstream()
                await ensure_stream(js, subjects)
                started = time.perf_counter()
                last = await _publish(js, subjects, records)
                publish_s = time.perf_counter() - started
                private, public = generate_key_pair(str(root / "key"))
                results: dict[str, object] = {"records": last, "publish_per_s": round(last / publish_s)}
                for name, key in (("unsigned", None), ("signed", private)):
                    results[name] = await _drain(nc, subjects, str(root / name), key, last)
                started = time.perf_counter()
                report = verify_log(str(root / "signed"), public_key=load_public_key(public))
                assert report.ok, report.summary()
                results["verify_signed_per_s"] = round(report.records / (time.perf_counter() - started))
                return results
            finally:
                await nc.close()


async def _publish(js, subjects: Subjects, n: int) -> int:  # type: ignore[no-untyped-def]
    """``n`` events, pipelined; returns the last one's stream sequence."""
    pending = []
    for i in range(n // 2):
        sid = f"bench{i % 8}"
        action = CmdRun(id=new_id(), command=f"python -c 'print({i})' && ls -la /workspace/project-{i % 50}")
        answer = CmdOutput(id=new_id(), cause=action.id, session_id=sid, content=f"{i}\n" + "x" * 120, exit_code=0,
                           working_dir="/workspace")
        pending.append(await js.publish_async(subjects.action(sid, "cmd_run"), encode(action)))
        pending.append(await js.publish_async(subjects.obs(sid, "cmd_output"), encode(answer)))
    acks = await asyncio.gather(*pending)
    return max(ack.seq for ack in acks)


async def _drain(nc: Nats, subjects: Subjects, directory: str, key: str | None, last: int) -> dict[str, object]:
    writer = AuditWriter(nc, subjects, AuditWriterConfig(directory=directory, key_file=key,
                                                         durable=f"bench_{os.path.basename(directory)}"))
    await writer.open()
    started = time.perf_counter()
    task = asyncio.create_task(writer.run())
    try:
        await writer.wait_for_seq(last, timeout_s=600)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory) if n.endswith(".jsonl"))
    return {"records_per_s": round(last / elapsed), "seconds": round(elapsed, 3),
            "bytes_per_record": round(size / last)}
