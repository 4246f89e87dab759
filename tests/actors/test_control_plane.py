"""The control plane never drops an answer: fast verbs beside queued creates, and two controllers."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdRun, RequestError, codes, encode
from workers.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow


def _worker(nats_server, tmp_path, name="w1", **kw):
    kw.setdefault("warm_pool", 0)
    return Worker(WorkerConfig(nats_url=nats_server.url, worker_id=name, base_dir=str(tmp_path / name),
                               heartbeat_interval_s=0.2, **kw))


async def test_a_close_is_answered_at_once_while_forty_creates_wait_and_frees_a_slot(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, create_queue_timeout_s=30))
    await ctl.start()
    worker = _worker(nats_server, tmp_path, capacity=1)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            first = await client.create_session()
            waiting = [asyncio.create_task(client.create_session(labels={"n": str(n)})) for n in range(40)]
            while ctl._placement.waiting < 40:  # every create is parked, none is answered
                await asyncio.sleep(0.01)
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(first.close(), 1.0)
            assert asyncio.get_running_loop().time() - started < 1.0
            placed = await asyncio.wait_for(waiting[0], 10)  # the first in line gets the freed slot
            assert placed.info.labels == {"n": "0"} and not any(t.done() for t in waiting[1:])
            await placed.close()
            for task in waiting[1:]:
                task.cancel()
            await asyncio.gather(*waiting[1:], return_exceptions=True)
    finally:
        await worker.aclose()
        await ctl.aclose()


async def _controller_process(url: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "controller", "--nats", url, "--lease-ttl", "1.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
    assert b"corral controller" in line and b"leading" in line, line
    return proc


async def test_two_controllers_share_the_registry_and_one_takes_over_when_the_other_dies(nats_server, tmp_path):
    leader = await _controller_process(nats_server.url)
    standby = Controller(ControllerConfig(nats_url=nats_server.url, lease_ttl_s=1.5, reap_interval_s=0.2))
    await standby.start()
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        assert not standby.leading
        async with await Client.connect(nats_server.url) as client:
            sessions = [await client.create_session(idle_timeout_s=60 if n else 4) for n in range(6)]
            for _ in range(20):  # requests are shared at random: each controller must know every session
                for s in sessions:
                    assert (await client.get_session(s.session_id)).status == "ready"
            leader.send_signal(signal.SIGKILL)
            await leader.wait()
            while not standby.leading:  # the lease expires, the standby takes the duties
                await asyncio.sleep(0.1)
            assert {s.session_id for s in await client.list_sessions()} == {s.session_id for s in sessions}
            out = await sessions[1].cmd("echo still served")
            assert out.content == "still served\n"
            # Duties done once, now by the new leader: unknown sessions are answered, idle ones reaped.
            sub = await client.nats.subscribe(client.subjects.observations("snosuch"))
            await client.nats.publish(client.subjects.action("snosuch", "cmd_run"), encode(CmdRun(id="x1", command="ls")))
            msg = await sub.next_msg(timeout=10)
            assert b"unknown_session" in msg.data
            with pytest.raises(RequestError) as gone:
                for _ in range(200):
                    await client.get_session(sessions[0].session_id)
                    await asyncio.sleep(0.05)
            assert gone.value.code == codes.UNKNOWN_SESSION
            for s in sessions[1:]:
                await s.close()
    finally:
        if leader.returncode is None:
            leader.kill()
            await leader.wait()
        await worker.aclose()
        await standby.aclose()
