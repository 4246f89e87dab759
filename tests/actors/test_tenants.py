"""Tenants end to end on the secure broker: the controller scopes every verb to the requester's
tenant, the worker serves (and re-adopts) a tenant's session on the tenant's subjects."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import signal

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import (
    ConfirmationRequired,
    Client,
    CmdOutput,
    CmdRun,
    Confirm,
    ConfirmResult,
    Error,
    RequestError,
    Session,
    codes,
    decode_reply,
    encode,
    new_id,
)
from workers.session import ALLOW, GATES, Gate, Hold, RunnerConfig
from workers.worker import Worker, WorkerConfig

from .secure_broker import barrier, start_secure_broker


class HoldGate(Gate):
    """Holds commands that say HOLD until a confirm: the test's stand-in for an analyzer."""

    name = "hold"

    async def check(self, action, ctx):  # type: ignore[no-untyped-def]
        if isinstance(action, CmdRun) and "HOLD" in action.command:
            return Hold(reason="the command says HOLD", timeout_s=30)
        return ALLOW


GATES.register("test-tenants-hold", lambda ctx: HoldGate())


class Tenants:
    def __init__(self, broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.broker = broker
        self.url = broker.server.url
        self.worker_config = WorkerConfig(
            nats_url=self.url, worker_id="wt", base_dir=str(tmp_path / "w"), warm_pool=0,
            creds=str(broker.store.creds_path("worker")),
            runner=RunnerConfig(gates=["test-tenants-hold"], handlers=["executor"]))
        self.worker: Worker | None = None

    def creds(self, role: str, tenant: str = "") -> str:
        return str(self.broker.store.creds_path(f"{tenant}.{role}" if tenant else role))

    async def start_worker(self) -> Worker:
        self.worker = Worker(self.worker_config)
        await self.worker.start()
        return self.worker


@pytest.fixture
async def tenants(tmp_path):
    broker, close = await start_secure_broker(tmp_path)
    ctl = Controller(ControllerConfig(nats_url=broker.server.url, creds=str(broker.store.creds_path("controller")),
                                      reap_interval_s=0.2))
    await ctl.start()
    found = Tenants(broker, tmp_path)
    await found.start_worker()
    try:
        yield found
    finally:
        if found.worker is not None:
            await found.worker.aclose()
        await ctl.aclose()
        await close()


@pytest.fixture
async def clients(tenants):
    """(tenant a's client, tenant b's client, the operator's admin client)."""
    async with await Client.connect(creds=tenants.creds("client", "a")) as a, \
            await Client.connect(creds=tenants.creds("client", "b")) as b, \
            await Client.connect(creds=tenants.creds("admin")) as admin:
        yield a, b, admin


async def test_a_tenant_runs_echo_and_lists_only_its_own_sessions(clients):
    a, b, admin = clients
    async with await a.create_session() as sa, await b.create_session() as sb:
        assert sa.info.tenant == "a" and sb.info.tenant == "b"
        out = await sa.cmd("echo hi")
        assert isinstance(out, CmdOutput) and out.content == "hi\n" and out.exit_code == 0
        assert [s.session_id for s in await a.list_sessions()] == [sa.session_id]
        assert [s.session_id for s in await b.list_sessions()] == [sb.session_id]
        every = {s.session_id: s.tenant for s in await admin.list_sessions()}
        assert every == {sa.session_id: "a", sb.session_id: "b"}
        assert (await a.get_session(sa.session_id)).tenant == "a"


async def test_another_tenant_s_session_is_unknown_to_every_verb(clients):
    a, b, _admin = clients
    async with await b.create_session() as sb:
        calls = [a.get_session(sb.session_id), a.close_session(sb.session_id), a.pause_session(sb.session_id),
                 a.resume_session(sb.session_id), a.expose(sb.session_id, 8000), a.unexpose(sb.session_id, 8000),
                 a.vscode(sb.session_id), a.attach(sb.session_id)]
        for call in calls:
            with pytest.raises(RequestError) as info:
                await call
            assert info.value.code == codes.UNKNOWN_SESSION
            assert info.value.message == f"no session {sb.session_id!r} (never created, or closed)"
        assert (await sb.cmd("echo still mine")).content == "still mine\n"


async def test_the_operator_s_verbs_are_not_permitted_to_a_tenant(clients):
    a, _b, admin = clients
    with pytest.raises(RequestError) as info:
        await a.workers()
    assert info.value.code == codes.NOT_PERMITTED
    with pytest.raises(RequestError) as info:
        await a.drain_worker("wt")
    assert info.value.code == codes.NOT_PERMITTED
    assert [w.worker_id for w in await admin.workers()] == ["wt"]


async def test_an_action_naming_another_tenant_s_session_is_answered_unknown_session_and_never_runs(clients, tmp_path):
    a, b, _admin = clients
    marker = tmp_path / "ran"
    async with await b.create_session() as sb:
        forged = await Session.open(a, sb.info)  # A's subjects, B's session id
        try:
            out = await forged.run(CmdRun(id=new_id(), command=f"touch {marker}"), wait_s=10)
        finally:
            await forged.detach()
        assert isinstance(out, Error) and out.code == codes.UNKNOWN_SESSION
        assert (await sb.cmd(f"test -e {marker}; echo $?")).content == "1\n"


async def test_a_client_s_confirm_is_refused_and_the_tenant_s_approver_releases_the_held_action(tenants, clients):
    a, _b, _admin = clients
    async with await a.create_session() as sa, \
            await Client.connect(creds=tenants.creds("approver", "a")) as approver:
        stream = sa.stream(CmdRun(id=new_id(), command="echo released # HOLD"))
        held = await asyncio.wait_for(stream.__anext__(), 10)
        assert isinstance(held, ConfirmationRequired)
        refused = await sa.confirm(held.cause)
        assert isinstance(refused, Error) and refused.code == codes.NOT_PERMITTED
        # Past the SDK, straight onto the wire: the broker drops it, the action stays held.
        await a.nats.publish(a.subjects.action(sa.session_id, "confirm"),
                             encode(Confirm(id=new_id(), action_id=held.cause)))
        await a.nats.flush()
        as_approver = await approver.attach(sa.session_id)
        try:
            released = await as_approver.confirm(held.cause)
        finally:
            await as_approver.detach()
        assert isinstance(released, ConfirmResult) and released.approved
        final = [obs async for obs in stream][-1]
        assert isinstance(final, CmdOutput) and final.content == "released\n"


async def test_replaying_stored_observations_is_not_permitted_to_a_tenant(clients):
    a, _b, _admin = clients
    async with await a.create_session() as sa:
        with pytest.raises(RequestError) as info:
            async for _ in sa.observations(follow=False):
                pass
        assert info.value.code == codes.NOT_PERMITTED


async def _status(client: Client, session_id: str, wanted: str) -> asyncio.Task:
    """A task resolving to the first ``wanted`` status of the session, on the client's (tenant's) subjects."""
    sub = await client.nats.subscribe(client.subjects.status(session_id))
    await barrier(client.nats, client.subjects.lookup("barrier"))

    async def wait():  # type: ignore[no-untyped-def]
        try:
            while True:
                info = decode_reply((await sub.next_msg(timeout=20)).data)
                if info.status == wanted:
                    return info
        finally:
            await sub.unsubscribe()
    return asyncio.create_task(wait())


async def test_a_restarted_worker_serves_a_tenant_s_session_on_the_tenant_s_subjects_again(tenants, clients):
    a, _b, admin = clients
    session = await a.create_session()
    await session.cmd("export KEPT=yes")
    await tenants.worker.aclose(destroy_sandboxes=False)  # the sandbox outlives its worker
    recovered = await _status(a, session.session_id, "recovered")
    await tenants.start_worker()
    info = await asyncio.wait_for(recovered, 20)
    assert info.tenant == "a"
    assert (await session.cmd("echo $KEPT")).content == "yes\n"
    assert (await admin.get_session(session.session_id)).tenant == "a"
    await session.close()


async def test_a_tenant_s_session_whose_sandbox_died_with_its_worker_down_is_lost_on_the_tenant_s_subjects(
        tenants, clients, tmp_path):
    a, _b, _admin = clients
    session = await a.create_session()
    (handle_file,) = Path(tmp_path / "w").glob("local/wt/*/sandbox.json")
    executor_pid = json.loads(handle_file.read_text())["pid"]
    await tenants.worker.aclose(destroy_sandboxes=False)
    os.killpg(executor_pid, signal.SIGKILL)  # the sandbox dies while nobody watches
    pending = asyncio.create_task(session.cmd("echo never"))
    lost = await _status(a, session.session_id, "lost")
    await asyncio.sleep(0)  # the action goes out before the worker returns
    await tenants.start_worker()
    assert (await asyncio.wait_for(lost, 20)).tenant == "a"
    answer = await asyncio.wait_for(pending, 20)
    assert isinstance(answer, Error) and answer.code == codes.SANDBOX_LOST
    await session.detach()
