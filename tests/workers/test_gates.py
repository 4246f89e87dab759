"""The gate chain: allow, deny, hold until a confirm; a held action blocks neither other shells nor its confirm.

The gates here are plain ones (no risk, no summary): the runner fills in what they leave out."""

from __future__ import annotations

import asyncio

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdOutput, CmdRun, ConfirmationRequired, ConfirmResult, Error, McpList, Rejected, codes, new_id
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
        if isinstance(action, CmdRun) and "CRASH" in action.command:
            raise RuntimeError("the gate itself is broken")
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
    """Start an action and return (its task, the confirmation_required observation)."""
    stream = session.stream(action)
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(first, ConfirmationRequired), first

    async def rest():  # type: ignore[no-untyped-def]
        return [obs async for obs in stream][-1]
    return asyncio.create_task(rest()), first


async def test_a_denied_action_is_answered_and_never_runs(gated):
    async with await gated.create_session() as session:
        action = CmdRun(id=new_id(), command="touch denied # DENY")
        out = await session.run(action)
        assert isinstance(out, Rejected) and out.cause == action.id
        assert (out.decided_by, out.code, out.analyzer, out.risk) == ("policy", codes.ACTION_DENIED, "words", "unknown")
        assert out.reason == "the command says DENY"
        assert (await session.cmd("test -e denied; echo $?")).content == "1\n"


async def test_a_gate_that_raises_denies_the_action(gated):
    async with await gated.create_session() as session:
        out = await session.run(CmdRun(id=new_id(), command="touch crashed # CRASH"))
        assert isinstance(out, Rejected) and out.decided_by == "policy" and "broken" in out.reason
        assert (await session.cmd("test -e crashed; echo $?")).content == "1\n"


async def test_a_held_action_runs_once_a_confirm_releases_it(gated):
    async with await gated.create_session() as session:
        task, held = await _held(session, CmdRun(id=new_id(), command="echo released # HOLD"))
        assert (held.analyzer, held.action_id, held.action_kind) == ("words", held.cause, "cmd_run")
        assert "HOLD" in held.reason and held.summary == "echo released # HOLD" and held.risk == "unknown"
        result = await session.confirm(held.cause)
        assert isinstance(result, ConfirmResult) and result.approved and result.action_id == held.cause
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, CmdOutput) and out.content == "released\n"


async def test_a_rejected_action_never_runs(gated):
    async with await gated.create_session() as session:
        task, held = await _held(session, CmdRun(id=new_id(), command="touch rejected # HOLD"))
        await session.confirm(held.cause, approve=False, by="alice")
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, Rejected) and out.code == codes.ACTION_REJECTED
        assert (out.decided_by, out.approver) == ("approver", "alice")
        assert (await session.cmd("test -e rejected; echo $?")).content == "1\n"


async def test_a_held_action_with_no_confirm_times_out(gated):
    async with await gated.create_session(labels={"hold_s": "0.5"}) as session:
        out = await asyncio.wait_for(session.run(CmdRun(id=new_id(), command="touch late # HOLD")), 10)
        assert isinstance(out, Rejected) and out.code == codes.CONFIRMATION_TIMEOUT and out.decided_by == "timeout"


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
