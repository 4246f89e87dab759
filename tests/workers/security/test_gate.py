"""The security gate end to end: a real broker, controller and local worker, driven through the SDK.

High-risk commands here are harmless if they ran (``echo x || sudo -n true`` never reaches sudo),
and what a refused one would have made (a file) is checked to be absent.
"""

from __future__ import annotations

import asyncio

import pytest

from protocol import (
    CmdOutput,
    CmdRun,
    ConfirmationRequired,
    ConfirmResult,
    Error,
    Rejected,
    RequestError,
    SecurityPolicy,
    codes,
    new_id,
)
from workers.security import ANALYZERS, Analyzer, Finding, SecurityConfig

from ..helpers import FinalLedger

HIGH = "|| sudo -n true"
"""Appended to a command, makes it high risk (rule ``sudo``) without changing what it does."""


async def held(session, command: str, shell: str = "main"):  # type: ignore[no-untyped-def]
    """Publish ``command``; return (a task for its final answer, its confirmation_required)."""
    stream = session.stream(CmdRun(id=new_id(), command=command, shell=shell))
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(first, ConfirmationRequired), first

    async def final():  # type: ignore[no-untyped-def]
        return [obs async for obs in stream][-1]
    return asyncio.create_task(final()), first


async def test_a_high_risk_command_asks_for_confirmation_and_runs_once_approved_in_order(secured):
    async with secured() as client, await client.create_session() as session:
        task, required = await held(session, f"echo approved {HIGH}")
        assert (required.risk, required.analyzer, required.action_kind, required.timeout_s) == ("high", "rules", "cmd_run", 60)
        assert required.action_id == required.cause and required.summary == f"echo approved {HIGH}"
        assert "rule sudo" in required.reason
        behind = asyncio.create_task(session.cmd("echo behind"))  # same shell: waits behind the held one
        other = await asyncio.wait_for(session.cmd("echo other", shell="b"), 10)  # another shell goes on
        assert other.content == "other\n" and not behind.done() and not task.done()
        result = await session.confirm(required.action_id, by="alice")
        assert isinstance(result, ConfirmResult) and result.approved
        assert (await asyncio.wait_for(task, 10)).content == "approved\n"
        assert (await asyncio.wait_for(behind, 10)).content == "behind\n"


async def test_a_rejected_action_is_answered_rejected_by_its_approver_and_never_runs(secured):
    async with secured() as client, await client.create_session() as session:
        task, required = await held(session, f"touch rejected {HIGH}")
        await session.confirm(required.action_id, approve=False, by="bob")
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, Rejected) and out.cause == required.action_id
        assert (out.decided_by, out.code, out.approver, out.risk, out.analyzer) == (
            "approver", codes.ACTION_REJECTED, "bob", "high", "rules")
        assert (await session.cmd("test -e rejected; echo $?")).content == "1\n"


async def test_no_confirm_within_the_timeout_rejects(secured):
    async with secured() as client, await client.create_session(security={"policy": {"confirm_timeout_s": 0.5}}) as session:
        task, required = await held(session, f"touch late {HIGH}")
        assert required.timeout_s == 0.5
        out = await asyncio.wait_for(task, 10)
        assert isinstance(out, Rejected) and (out.decided_by, out.code) == ("timeout", codes.CONFIRMATION_TIMEOUT)
        assert (await session.cmd("test -e late; echo $?")).content == "1\n"


async def test_a_block_policy_rejects_without_running(secured):
    async with secured(SecurityConfig(policy=SecurityPolicy(high="block"))) as client, await client.create_session() as session:
        out = await session.run(CmdRun(id=new_id(), command=f"touch blocked {HIGH}"))
        assert isinstance(out, Rejected) and (out.decided_by, out.code, out.risk) == ("policy", codes.ACTION_DENIED, "high")
        assert (await session.cmd("test -e blocked; echo $?")).content == "1\n"


async def test_a_session_may_block_what_its_deployment_would_confirm(secured):
    async with secured() as client, await client.create_session(security={"policy": {"high": "block"}}) as session:
        out = await session.run(CmdRun(id=new_id(), command=f"touch blocked {HIGH}"))
        assert isinstance(out, Rejected) and out.decided_by == "policy"


async def test_a_forged_confirm_naming_another_sessions_action_is_not_held_and_leaves_it_held(secured):
    async with secured() as client, await client.create_session() as a, await client.create_session() as b:
        task, required = await held(b, f"echo mine {HIGH}")
        forged = await a.confirm(required.action_id, by="mallory")
        assert isinstance(forged, Error) and forged.code == codes.NOT_HELD
        assert not task.done()
        assert isinstance(await b.confirm(required.action_id), ConfirmResult)  # still held in B, until now
        assert (await asyncio.wait_for(task, 10)).content == "mine\n"


@pytest.mark.parametrize(("security", "says"), [
    ({"policy": {"high": "allow"}}, "weaker"),
    ({"policy": {"unknown": "allow", "medium": "allow", "low": "allow", "confirm_timeout_s": 600}}, "longer"),
    ({"analyzers": ["no-such-analyzer"]}, "no-such-analyzer"),
    ({"analyzers": ["llm"]}, "llm.url"),
    ({"rules": [{"kind": "cmd_runn", "risk": "high"}]}, "not an action kind"),
])
async def test_a_spec_that_loosens_the_policy_or_names_what_is_not_here_is_invalid_spec(secured, security, says):
    async with secured() as client:
        with pytest.raises(RequestError) as caught:
            await client.create_session(security=security)
        assert caught.value.code == codes.INVALID_SPEC and says in caught.value.message


async def test_session_rules_add_to_the_deployments(secured):
    rule = {"kind": "cmd_run", "program": "make", "args": "deploy", "risk": "high", "reason": "deploys"}
    async with secured() as client, await client.create_session(security={"rules": [rule]}) as session:
        task, required = await held(session, "make deploy")
        assert required.reason == "deploys"
        await session.confirm(required.action_id, approve=False)
        await asyncio.wait_for(task, 10)
        assert (await session.cmd("echo plain make is fine")).content == "plain make is fine\n"


class Raises(Analyzer):
    name = "test-raises"

    async def analyze(self, action, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("this analyzer is broken")


class Slow(Analyzer):
    name = "test-slow"

    async def analyze(self, action, ctx):  # type: ignore[no-untyped-def]
        await asyncio.sleep(30)
        return Finding(risk="low")


ANALYZERS.register("test-raises", Raises)
ANALYZERS.register("test-slow", Slow)


async def test_an_analyzer_that_raises_gives_unknown_and_the_action_one_answer(secured, nats_server):
    async with secured() as client, await client.create_session(security={"analyzers": ["test-raises"]}) as session:
        ledger = await FinalLedger().watch(client.nats, client.subjects, session.session_id)
        action = CmdRun(id=new_id(), command="echo still runs")
        out = await session.run(action)  # unknown is allowed by the default policy
        assert isinstance(out, CmdOutput) and out.content == "still runs\n"
        await ledger.wait_for([action.id])
        await client.nats.flush()
        assert ledger.counts[action.id] == 1
        await ledger.aclose()


async def test_an_unknown_finding_is_what_the_policy_says_of_unknown(secured):
    spec = {"analyzers": ["test-raises"], "policy": {"unknown": "block"}}
    async with secured() as client, await client.create_session(security=spec) as session:
        out = await session.run(CmdRun(id=new_id(), command="touch nope"))
        assert isinstance(out, Rejected) and out.risk == "unknown" and "broken" in out.reason
        assert out.analyzer == "test-raises"


async def test_an_analyzer_past_its_timeout_gives_unknown(secured):
    config = SecurityConfig(analyzer_timeout_s=0.3)
    spec = {"analyzers": ["test-slow"], "policy": {"unknown": "block"}}
    async with secured(config) as client, await client.create_session(security=spec) as session:
        out = await session.run(CmdRun(id=new_id(), command="echo x"))
        assert isinstance(out, Rejected) and "did not answer within 0.3 s" in out.reason


async def test_a_worker_without_the_gate_runs_everything(secured):
    async with secured(SecurityConfig(enabled=False)) as client, await client.create_session() as session:
        assert (await session.cmd(f"echo unguarded {HIGH}")).content == "unguarded\n"
