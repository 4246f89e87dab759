"""Warm pools: a create claims a prestarted sandbox; env and workdir never force a cold start."""

import asyncio

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, RequestError, codes
from workers.worker import Worker, WorkerConfig


@pytest.fixture
async def pooled(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wp", base_dir=str(tmp_path / "w"), warm_pool=1))
    await worker.start()
    async with await Client.connect(nats_server.url) as client:
        yield worker, client
    await worker.aclose()
    await ctl.aclose()


async def _until_warm(worker):
    while not worker.info().warm:
        await asyncio.sleep(0.02)


async def test_create_claims_a_warm_sandbox_with_the_sessions_env_and_workdir(pooled, tmp_path):
    worker, client = pooled
    await asyncio.wait_for(_until_warm(worker), 20)
    async with await client.create_session(env={"WHO": "warm"}, workdir=str(tmp_path / "wd")) as s:
        assert s.info.warm
        out = await s.cmd("echo $WHO; pwd")
        assert out.content == f"warm\n{tmp_path / 'wd'}\n"


async def test_pool_refills_after_a_claim(pooled):
    worker, client = pooled
    await asyncio.wait_for(_until_warm(worker), 20)
    s = await client.create_session()
    await asyncio.wait_for(_until_warm(worker), 20)
    assert worker.info().warm == 1
    await s.close()


async def test_unusable_workdir_is_invalid_spec(pooled, tmp_path):
    worker, client = pooled
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RequestError) as info:
        await client.create_session(workdir=str(blocker / "sub"))
    assert info.value.code == codes.INVALID_SPEC


async def test_a_restarted_worker_readopts_its_running_sandboxes(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    config = WorkerConfig(nats_url=nats_server.url, worker_id="wr", base_dir=str(tmp_path / "w"), warm_pool=0)
    first = Worker(config)
    await first.start()
    async with await Client.connect(nats_server.url) as client:
        s = await client.create_session()
        await s.cmd("export KEPT=yes; cd /tmp")
        await first.aclose(destroy_sandboxes=False)  # the sandbox outlives its worker
        second = Worker(config)
        status = await _watch_status(client, s.session_id, "recovered")
        await second.start()
        assert (await asyncio.wait_for(status, 10)).worker_id == "wr"
        out = await s.cmd("echo $KEPT; pwd")
        assert out.content == "yes\n/tmp\n"
        assert (await client.get_session(s.session_id)).status == "ready"
        await s.close()
        await second.aclose()
    await ctl.aclose()


async def test_sweep_removes_sandboxes_no_session_owns(nats_server, tmp_path):
    config = WorkerConfig(nats_url=nats_server.url, worker_id="ws", base_dir=str(tmp_path / "w"), warm_pool=0)
    worker = Worker(config)
    await worker.start()
    try:
        orphan = await worker.backend.create("sgone", __import__("protocol").SessionSpec())
        import msgspec
        orphan_old = msgspec.structs.replace(orphan, created_at=0.0)
        worker.backend._save(orphan_old)
        assert await worker.sweep_once() == 1
        assert await worker.backend.alive(orphan) is not None
    finally:
        await worker.aclose()


async def _watch_status(client, session_id, wanted):
    """Subscribe now (flushed, so nothing published after this returns is missed); a task that
    resolves to the first status event ``wanted``."""
    from protocol import decode_reply
    sub = await client.nats.subscribe(client.subjects.status(session_id))
    await client.nats.flush()

    async def wait():
        try:
            while True:
                info = decode_reply((await sub.next_msg(timeout=10)).data)
                if info.status == wanted:
                    return info
        finally:
            await sub.unsubscribe()

    return asyncio.create_task(wait())


async def test_a_sandbox_killed_while_idle_is_noticed_and_its_session_lost(nats_server, tmp_path):
    import os
    import signal

    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wd", base_dir=str(tmp_path / "w"),
                                 warm_pool=0, watch_interval_s=0.1))
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            s = await client.create_session()
            lost = await _watch_status(client, s.session_id, "lost")
            os.kill(worker._runners[s.session_id].handle.pid, signal.SIGKILL)
            info = await asyncio.wait_for(lost, 10)
            assert "sandbox died" in info.reason
            late = await s.cmd("echo too late")
            assert late.code == codes.SANDBOX_LOST
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_a_repeated_id_after_a_worker_restart_gets_the_executors_stored_answer(nats_server, tmp_path):
    from protocol import CmdRun, new_id
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    config = WorkerConfig(nats_url=nats_server.url, worker_id="wi", base_dir=str(tmp_path / "w"), warm_pool=0)
    first = Worker(config)
    await first.start()
    async with await Client.connect(nats_server.url) as client:
        s = await client.create_session()
        action = CmdRun(id=new_id(), command="echo once >> m; wc -l < m")
        answer = await s.run(action)
        await first.aclose(destroy_sandboxes=False)
        second = Worker(config)
        recovered = await _watch_status(client, s.session_id, "recovered")
        await second.start()
        await asyncio.wait_for(recovered, 10)
        again = await asyncio.wait_for(s.run(action), 10)  # deduplicated by the stream: answered by lookup
        assert again == answer
        assert (await s.cmd("wc -l < m")).content == "1\n"
        await s.close()
        await second.aclose()
    await ctl.aclose()
