"""The gate chain: allow, deny, hold until a confirm; a held action blocks neither other shells nor its confirm."""

from __future__ import annotations

import asyncio

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import ActionHeld, Client, CmdOutput, CmdRun, ConfirmResult, Error, McpList, codes, new_id
from workers.session import ALLOW, GATES, Deny, Gate, Hold, RunnerConfig
from workers.worker import Worker, WorkerConfig


class WordGate(Gate):
    """Holds commands that say HOLD, denies those that say DENY: the test's stand-in for an analyzer."""

    name = "words"

    async def check(self, action, ctx):  # type: ignore[no-untyped-def]
        if isinstance(action, CmdRun) and "DENY" in action.command:
            return Deny(reason="the command says DENY")
        if isinstance(action, CmdRun) and "HOLD" in action.command:
            return Hold(reason="the command says HOLD", timeout_s=float(ctx.spec.labels.get("hold_s", "30")))
        return ALLOW


GATES.register("test-words", lambda ctx: WordGate())


@pytest.fixture
async def gated(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wg", base_dir=str(tmp_path / "w"), warm_pool=0,
                                 runner=RunnerConfig(gates=["test-words"], handlers=["executor"])))
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            yield client
    finally:
        await worker.aclose()
        await ctl.aclose()


async def _held(session, action):  # type: ignore[no-untyped-def]
    """Start an action and return (its task, the action_held observation)."""
    stream = session.stream(action)
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(first, ActionHeld), first

    async def rest():  # type: ignore[no-untyped-def]
        return [obs async for obs in stream][-1]
    return asyncio.create_task(rest()), first


async def test_a_denied_action_is_answered_and_never_runs(gated):
    async with await gated.create_session() as session:
        out = await session.run(CmdRun(id=new_id(), command="touch denied # DENY"))
        assert isinstance(out, Error) and out.code == codes.ACTION_DENIED and "words" in out.message
        assert (await session.cmd("test -e denied; echo $?")).content == "1\n"


async def test_a_held_action_runs_once_a_confirm_releases_it(gated):
    async with await gated.create_session() as session:
        task, held = await _held(session, CmdRun(id=new_id(), command="echo released # HOLD"))
        assert held.gate == "words" and "HOLD" in held.reason
        result = await session.confirm(held.cause)
        assert isinstance(result, ConfirmResult) and result.approved and result.action_id == held.cause
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, CmdOutput) and out.content == "released\n"


async def test_a_rejected_action_never_runs(gated):
    async with await gated.create_session() as session:
        task, held = await _held(session, CmdRun(id=new_id(), command="touch rejected # HOLD"))
        await session.confirm(held.cause, approve=False)
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, Error) and out.code == codes.ACTION_REJECTED
        assert (await session.cmd("test -e rejected; echo $?")).content == "1\n"


async def test_a_held_action_with_no_confirm_times_out(gated):
    async with await gated.create_session(labels={"hold_s": "0.5"}) as session:
        out = await asyncio.wait_for(session.run(CmdRun(id=new_id(), command="touch late # HOLD")), 10)
        assert isinstance(out, Error) and out.code == codes.CONFIRMATION_TIMEOUT


async def test_a_held_action_blocks_neither_other_shells_nor_its_confirm(gated):
    async with await gated.create_session() as session:
        task, held = await _held(session, CmdRun(id=new_id(), command="echo first # HOLD"))
        behind = asyncio.create_task(session.cmd("echo behind"))  # same lane: waits, in order
        other = await asyncio.wait_for(session.cmd("echo other", shell="side"), 10)
        assert other.content == "other\n" and not behind.done()
        await asyncio.wait_for(session.confirm(held.cause), 10)
        assert (await asyncio.wait_for(task, 10)).content == "first\n"
        assert (await asyncio.wait_for(behind, 10)).content == "behind\n"


async def test_a_confirm_for_an_action_that_is_not_held_is_not_held(gated):
    async with await gated.create_session() as session:
        result = await session.confirm("nothing-held")
        assert isinstance(result, Error) and result.code == codes.NOT_HELD


async def test_closing_a_session_answers_its_held_action(gated):
    session = await gated.create_session()
    task, _ = await _held(session, CmdRun(id=new_id(), command="echo never # HOLD"))
    await session.close()
    out = await asyncio.wait_for(task, 10)
    assert isinstance(out, Error) and out.code == codes.SESSION_CLOSED


async def test_a_kind_without_a_handler_is_unsupported_from_the_worker(gated):
    async with await gated.create_session() as session:
        out = await session.run(McpList(id=new_id()))  # this worker runs the executor handler only
        assert isinstance(out, Error) and out.code == codes.UNSUPPORTED and "handler" in out.message
