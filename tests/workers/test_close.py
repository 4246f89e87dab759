"""Closing a session answers everything it holds; a busy session is never reaped as idle."""

from __future__ import annotations

import asyncio

from protocol import CmdOutput, CmdRun, Error, codes, new_id

from .helpers import FinalLedger


async def _until_running(ledger_task_session, command_marker):  # type: ignore[no-untyped-def]
    session = ledger_task_session
    while (await session.cmd(f"test -e {command_marker} && echo yes || echo no", shell="probe")).content != "yes\n":
        await asyncio.sleep(0.05)


async def test_close_answers_the_running_and_the_queued_actions(client):
    session = await client.create_session()
    running = asyncio.create_task(session.run(CmdRun(id=new_id(), command="touch started; sleep 30")))
    await _until_running(session, "started")
    queued = asyncio.create_task(session.run(CmdRun(id=new_id(), command="echo behind")))
    await asyncio.sleep(0.1)  # let the queued action reach its lane
    await session.close()
    first, second = await asyncio.wait_for(asyncio.gather(running, queued), 10)
    assert isinstance(first, Error) and first.code == codes.SESSION_CLOSED, first
    assert isinstance(second, Error) and second.code == codes.SESSION_CLOSED, second


async def test_a_close_racing_a_burst_leaves_no_action_unanswered(client):
    for _ in range(3):
        session = await client.create_session()
        ledger = await FinalLedger().watch(client.nats, client.subjects, session.session_id)
        actions = [CmdRun(id=new_id(), command=f"echo {n}") for n in range(100)]
        for action in actions:
            await session._publish(action)
        await session.close()
        await ledger.wait_for([a.id for a in actions], timeout_s=20)
        assert all(ledger.counts[a.id] == 1 for a in actions)
        await ledger.aclose()


async def test_a_command_that_keeps_printing_is_not_reaped_as_idle(client):
    session = await client.create_session(idle_timeout_s=3)
    try:
        out = await asyncio.wait_for(session.run(CmdRun(
            id=new_id(), command="for i in 1 2 3 4 5 6 7; do echo $i; sleep 1; done")), 20)
        assert isinstance(out, CmdOutput) and out.content.split() == list("1234567"), out
        assert (await client.get_session(session.session_id)).status == "ready"
    finally:
        await session.close()


async def test_a_silent_long_command_is_not_reaped_as_idle(client):
    session = await client.create_session(idle_timeout_s=3)
    try:
        out = await asyncio.wait_for(session.run(CmdRun(id=new_id(), command="sleep 6; echo done")), 20)
        assert isinstance(out, CmdOutput) and out.content == "done\n", out
    finally:
        await session.close()
