"""The actor kernel: bounded inboxes, survival of bad messages, supervision, drain."""

import asyncio

import pytest
from structlog.testing import capture_logs

from actors import Actor, InboxFull, Supervisor


class Recorder(Actor[object]):
    name = "recorder"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    async def handle(self, message):
        if message == "boom":
            raise ValueError("bad message")
        if isinstance(message, asyncio.Event):
            await message.wait()
        self.seen.append(message)


async def test_a_bad_message_does_not_kill_the_actor():
    actor = Recorder()
    task = asyncio.create_task(actor.run())
    with capture_logs() as logs:
        for m in (1, "boom", 2):
            actor.tell(m)
        await actor.drain(5)
    assert actor.seen == [1, 2]
    assert actor.statistics()["failed"] == 1
    assert any(e["event"] == "actor_message_failed" and e["actor"] == "recorder" for e in logs)
    task.cancel()


async def test_a_full_inbox_refuses_instead_of_blocking():
    actor = Recorder(inbox_size=2)
    actor.tell(1)
    actor.tell(2)
    with pytest.raises(InboxFull):
        actor.tell(3)


async def test_drain_stops_intake_and_waits_for_in_flight_work():
    actor = Recorder()
    task = asyncio.create_task(actor.run())
    gate = asyncio.Event()
    actor.tell(gate)
    actor.tell("after")
    drained = asyncio.create_task(actor.drain(5))
    await asyncio.sleep(0)
    with pytest.raises(InboxFull):
        actor.tell("late")
    gate.set()
    assert await drained
    assert actor.seen == [gate, "after"]
    task.cancel()


async def test_drain_reports_a_missed_deadline():
    actor = Recorder()
    task = asyncio.create_task(actor.run())
    actor.tell(asyncio.Event())  # never set
    assert await actor.drain(0.05) is False
    task.cancel()


async def test_every_handled_message_gets_one_canonical_log_line():
    actor = Recorder()
    task = asyncio.create_task(actor.run())
    with capture_logs() as logs:
        actor.tell("a")
        await actor.drain(5)
    lines = [e for e in logs if e["event"] == "actor_message_handled"]
    assert len(lines) == 1 and lines[0]["actor"] == "recorder" and "duration_ms" in lines[0]
    task.cancel()


async def test_concurrent_actor_handles_several_messages_at_once():
    actor = Recorder(concurrency=3)
    task = asyncio.create_task(actor.run())
    gates = [asyncio.Event() for _ in range(3)]
    for g in gates:
        actor.tell(g)
    while actor.statistics()["busy"] < 3:
        await asyncio.sleep(0.001)
    for g in gates:
        g.set()
    assert await actor.drain(5)
    task.cancel()


async def test_supervisor_restarts_a_crashed_loop_with_backoff():
    runs = []
    done = asyncio.Event()

    async def flaky():
        runs.append(asyncio.get_running_loop().time())
        if len(runs) < 3:
            raise RuntimeError("crash")
        done.set()

    sup = Supervisor("t", backoff_s=0.01, max_backoff_s=1)
    with capture_logs() as logs:
        sup.start("flaky", flaky)
        await asyncio.wait_for(done.wait(), 5)
    assert sup.restarts["flaky"] == 2
    assert runs[2] - runs[1] >= runs[1] - runs[0]  # the delay grows
    assert sum(e["event"] == "actor_crashed" for e in logs) == 2
    await sup.aclose()


async def test_supervisor_close_cancels_children():
    started = asyncio.Event()

    async def forever():
        started.set()
        await asyncio.Event().wait()

    sup = Supervisor("t")
    task = sup.start("forever", forever)
    await started.wait()
    await sup.aclose()
    assert task.cancelled()
