"""Every action message gets exactly one final answer: across restarts, lost sessions and repeats."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import signal

import pytest

from actors import answered_in_stream, stream_name
from actors.controller import Controller, ControllerConfig
from protocol import (
    Client,
    CmdOutput,
    CmdRun,
    Error,
    FileRead,
    RequestError,
    codes,
    decode_reply,
    encode,
    new_id,
    replay,
)

from .helpers import FinalLedger, start_worker_process, stop

pytestmark = pytest.mark.slow


async def _stream_counts(client, session_id: str) -> dict[str, int]:
    """How many final observations the stream holds per action id."""
    from collections import Counter

    from actors import final_subjects
    from protocol import decode_observation, wants_json

    counts: Counter[str] = Counter()
    async for msg in replay(client.nats, final_subjects(client.subjects, session_id), idle_s=0.5,
                            stream=stream_name(client.subjects)):
        obs = decode_observation(msg.data, json=wants_json(msg.headers))
        counts[obs.cause] += 1
    return dict(counts)


async def _status(client, session_id: str, wanted: str):  # type: ignore[no-untyped-def]
    sub = await client.nats.subscribe(client.subjects.status(session_id))
    try:
        while True:
            info = decode_reply((await sub.next_msg(timeout=30)).data)
            if info.status == wanted:
                return info
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def controller(nats_server):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=2, reap_interval_s=0.2, lost_grace_s=60))
    await ctl.start()
    yield ctl
    await ctl.aclose()


async def test_answered_actions_behind_an_unacked_one_are_not_answered_again_after_a_restart(
        nats_server, controller, tmp_path):
    worker = await start_worker_process(nats_server.url, tmp_path / "w")
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            ledger = await FinalLedger().watch(client.nats, client.subjects, session.session_id)
            long = CmdRun(id=new_id(), command="sleep 6; echo long", shell="bg")
            long_task = asyncio.create_task(session.run(long))  # pins the consumer's ack floor
            echoes = [CmdRun(id=new_id(), command=f"echo {n}") for n in range(5)]
            for action in echoes:
                assert (await session.run(action)).exit_code == 0
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            worker = await start_worker_process(nats_server.url, tmp_path / "w")
            assert (await asyncio.wait_for(long_task, 30)).content == "long\n"
            # Redeliveries come in stream order, before anything sent now: its answer is the barrier.
            assert (await session.cmd("echo after")).content == "after\n"
            assert {a.id: ledger.counts[a.id] for a in echoes} == {a.id: 1 for a in echoes}
            assert ledger.counts[long.id] == 1
            stored = await _stream_counts(client, session.session_id)
            assert all(stored[a.id] == 1 for a in [*echoes, long])
            await session.close()
    finally:
        await stop(worker)


async def test_a_lost_session_answers_only_what_was_not_answered(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=2, reap_interval_s=0.2, lost_grace_s=1))
    await ctl.start()
    worker = await start_worker_process(nats_server.url, tmp_path / "w")
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            ledger = await FinalLedger().watch(client.nats, client.subjects, session.session_id)
            long = CmdRun(id=new_id(), command="sleep 60", shell="bg")
            long_task = asyncio.create_task(session.run(long))
            echoes = [CmdRun(id=new_id(), command=f"echo {n}") for n in range(5)]
            for action in echoes:
                await session.run(action)
            closed = asyncio.create_task(_status(client, session.session_id, "closed"))
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            await asyncio.wait_for(closed, 30)  # lost, then abandoned after the grace period
            answer = await asyncio.wait_for(long_task, 10)
            assert isinstance(answer, Error) and answer.code == codes.SANDBOX_LOST
            await ledger.wait_for([long.id])
            assert {a.id: ledger.counts[a.id] for a in echoes} == {a.id: 1 for a in echoes}
            assert ledger.counts[long.id] == 1
            assert all(isinstance(ledger.finals[a.id][0], CmdOutput) for a in echoes)
    finally:
        await stop(worker)
        await ctl.aclose()


async def test_a_sandbox_that_died_while_its_worker_was_down_makes_the_session_lost(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=60, reap_interval_s=0.2))
    await ctl.start()
    worker = await start_worker_process(nats_server.url, tmp_path / "w")
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            (handle_file,) = Path(tmp_path / "w").glob("local/wk/*/sandbox.json")
            executor_pid = json.loads(handle_file.read_text())["pid"]
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            os.killpg(executor_pid, signal.SIGKILL)  # the sandbox dies while nobody watches
            pending = asyncio.create_task(session.cmd("echo never"))
            lost = asyncio.create_task(_status(client, session.session_id, "lost"))
            await asyncio.sleep(0)  # let both subscriptions go out before the worker returns
            worker = await start_worker_process(nats_server.url, tmp_path / "w")
            info = await asyncio.wait_for(lost, 30)
            assert "gone" in (info.reason or "")
            answer = await asyncio.wait_for(pending, 30)
            assert isinstance(answer, Error) and answer.code == codes.SANDBOX_LOST
            with pytest.raises(RequestError) as gone:  # the registry forgets it once the controller hears
                for _ in range(100):
                    await client.get_session(session.session_id)
                    await asyncio.sleep(0.05)
            assert gone.value.code == codes.UNKNOWN_SESSION
    finally:
        await stop(worker)
        await ctl.aclose()


async def test_a_repeat_sent_while_the_first_copy_runs_is_answered_when_it_finishes(session, client, tmp_path):
    nc = client.nats
    ledger = await FinalLedger().watch(nc, client.subjects, session.session_id)
    action = CmdRun(id=new_id(), command="echo ran >> once.txt; sleep 1; echo done")
    subject = client.subjects.action(session.session_id, "cmd_run")
    await nc.jetstream().publish(subject, encode(action))  # raw publishes: no Nats-Msg-Id, so both are stored
    await nc.jetstream().publish(subject, encode(action))
    started = asyncio.get_running_loop().time()
    while ledger.counts[action.id] < 2:
        await ledger.wait_for([action.id], timeout_s=10)
        await asyncio.sleep(0.05)
    assert asyncio.get_running_loop().time() - started < 10  # not after the 30 s ack wait
    first, second = ledger.finals[action.id]
    assert first.id == second.id and first.content == "done\n"
    assert (await session.cmd("wc -l < once.txt")).content == "1\n"


async def test_the_answer_cache_is_bounded_by_bytes_and_old_answers_come_back_from_the_stream(deployment, client):
    session = await client.create_session()
    try:
        await session.write_file("big.txt", "y" * 850_000)
        reads = [FileRead(id=new_id(), path="big.txt") for _ in range(40)]
        for action in reads:
            assert len((await session.run(action)).content) == 850_000
        (runner,) = [r for w in deployment.workers for sid, r in w._runners.items() if sid == session.session_id]
        stats = runner.statistics()
        assert stats["answered"] >= 41 and stats["cached_bytes"] <= 2 * 2**20
        # The first read's answer is long out of the cache: a repeat gets it from the stream.
        again = await session.run(reads[0])
        assert again.content == "y" * 850_000
        answered = await answered_in_stream(client.nats, client.subjects, stream_name(client.subjects),
                                            session.session_id)
        assert reads[0].id in answered
    finally:
        await session.close()
