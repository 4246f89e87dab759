"""Real session events published through JetStream, and a writer running as a task, for the audit tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from actors.audit import AuditWriter
from protocol import CmdOutput, CmdRun, ConfirmationRequired, Rejected, SessionInfo, Subjects, encode, new_id


async def publish_turn(js, subjects: Subjects, session_id: str, command: str) -> int:  # type: ignore[no-untyped-def]
    """One action and its answer on the session's subjects; returns the answer's stream seq."""
    action = CmdRun(id=new_id(), command=command)
    await js.publish(subjects.action(session_id, "cmd_run"), encode(action), headers={"Nats-Msg-Id": action.id})
    answer = CmdOutput(id=new_id(), cause=action.id, session_id=session_id, content=f"{command}\n", exit_code=0)
    ack = await js.publish(subjects.obs(session_id, "cmd_output"), encode(answer))
    return ack.seq


async def publish_session(js, subjects: Subjects, session_id: str, turns: int) -> int:  # type: ignore[no-untyped-def]
    """A whole little session: ready, ``turns`` commands, one held and rejected, closed. Returns the last seq."""
    await js.publish(subjects.status(session_id), encode(SessionInfo(session_id=session_id, worker_id="w",
                                                                      backend="local", status="ready")))
    for n in range(turns):
        await publish_turn(js, subjects, session_id, f"echo {n}")
    held = CmdRun(id=new_id(), command="sudo rm -rf /")
    await js.publish(subjects.action(session_id, "cmd_run"), encode(held))
    await js.publish(subjects.obs(session_id, "confirmation_required"), encode(ConfirmationRequired(
        id=new_id(), cause=held.id, session_id=session_id, action_id=held.id, action_kind="cmd_run", risk="high",
        reason="sudo", summary=held.command)))
    await js.publish(subjects.obs(session_id, "rejected"), encode(Rejected(
        id=new_id(), cause=held.id, session_id=session_id, risk="high", reason="sudo", decided_by="timeout",
        code="confirmation_timeout")))
    ack = await js.publish(subjects.status(session_id), encode(SessionInfo(session_id=session_id, worker_id="w",
                                                                            backend="local", status="closed")))
    return ack.seq


@contextlib.asynccontextmanager
async def running(writer: AuditWriter) -> AsyncIterator[asyncio.Task[None]]:
    """The writer's run() as a task for the block; cancelled (and its log closed) after it."""
    task = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
