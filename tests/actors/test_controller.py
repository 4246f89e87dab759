"""The controller against a real broker and real workers."""

import asyncio

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdRun, ConnectionLost, Error, RequestError, Subjects, codes, decode_reply, new_id
from workers.worker import Worker, WorkerConfig


@pytest.fixture
async def controller(nats_server):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=1.0, reap_interval_s=0.2,
                                      create_queue_timeout_s=0.5, lost_grace_s=1.0))
    await ctl.start()
    yield ctl
    await ctl.aclose()


@pytest.fixture
async def bare_client(nats_server):
    async with await Client.connect(nats_server.url) as c:
        yield c


def _worker(nats_server, tmp_path, name="w1", **kw):
    kw.setdefault("warm_pool", 0)  # placement by load; warm preference has its own test
    config = WorkerConfig(nats_url=nats_server.url, worker_id=name, base_dir=str(tmp_path / name),
                          heartbeat_interval_s=0.2, **kw)
    return Worker(config)


async def test_create_without_workers_is_no_workers(controller, bare_client):
    with pytest.raises(RequestError) as info:
        await bare_client.create_session()
    assert info.value.code == codes.NO_WORKERS and "corral worker" in info.value.message


async def test_without_controller_requests_fail_clearly(nats_server, bare_client):
    with pytest.raises(ConnectionLost) as info:
        await bare_client.list_sessions()
    assert "controller" in info.value.message


async def test_sessions_are_listed_got_and_closed(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        s = await bare_client.create_session(labels={"task": "t1"})
        assert s.info.worker_id == "w1" and s.info.status == "ready"
        assert [x.session_id for x in await bare_client.list_sessions()] == [s.session_id]
        assert (await bare_client.get_session(s.session_id)).labels == {"task": "t1"}
        workers = await bare_client.workers()
        assert workers[0].worker_id == "w1" and workers[0].backend == "local"
        closed = await s.close()
        assert closed.status == "closed"
        with pytest.raises(RequestError) as info:
            await bare_client.get_session(s.session_id)
        assert info.value.code == codes.UNKNOWN_SESSION
    finally:
        await worker.aclose()


async def test_placement_spreads_sessions_over_workers(controller, bare_client, nats_server, tmp_path):
    workers = [_worker(nats_server, tmp_path, f"w{i}") for i in range(2)]
    for w in workers:
        await w.start()
    try:
        sessions = [await bare_client.create_session() for _ in range(4)]
        placed = sorted(s.info.worker_id for s in sessions)
        assert placed == ["w0", "w0", "w1", "w1"]
        for s in sessions:
            await s.close()
    finally:
        for w in workers:
            await w.aclose()


async def test_backend_without_worker_names_what_is_available(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        with pytest.raises(RequestError) as info:
            await bare_client.create_session(backend="kubernetes")
        assert info.value.code == codes.BACKEND_UNAVAILABLE and "local" in info.value.message
    finally:
        await worker.aclose()


async def test_full_worker_is_no_capacity(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path, capacity=1)
    await worker.start()
    try:
        s = await bare_client.create_session()
        with pytest.raises(RequestError) as info:
            await bare_client.create_session()
        assert info.value.code == codes.NO_CAPACITY
        await s.close()
    finally:
        await worker.aclose()


async def test_invalid_spec_value_is_invalid_spec(controller, bare_client):
    with pytest.raises(RequestError) as info:
        await bare_client.create_session(network="internet")
    assert info.value.code == codes.INVALID_SPEC and "network" in info.value.message


async def test_idle_session_is_reaped(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        s = await bare_client.create_session(idle_timeout_s=0.5)
        status = await _next_status(bare_client, s.session_id, {"closed"})
        assert status.status == "closed"
        with pytest.raises(RequestError):
            await bare_client.get_session(s.session_id)
    finally:
        await worker.aclose()


async def test_worker_that_stops_heartbeating_loses_its_sessions(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    s = await bare_client.create_session()
    watcher = await _watch_status(bare_client, s.session_id, {"lost"})
    # Cut the worker off the broker without closing its sessions: its heartbeats stop.
    await worker._nc.close()
    status = await asyncio.wait_for(watcher, 10)
    assert status.status == "lost" and "heartbeat" in status.reason
    assert (await bare_client.get_session(s.session_id)).status == "lost"
    # Sent while lost: it waits for a recovery that never comes, then is answered.
    out = await s.run(CmdRun(id=new_id(), command="echo hi"), wait_s=10)
    assert isinstance(out, Error) and out.code == codes.SANDBOX_LOST and "not recovered" in out.message
    late = await s.run(CmdRun(id=new_id(), command="echo late"), wait_s=10)
    assert isinstance(late, Error) and late.code == codes.SANDBOX_LOST
    await worker.aclose()


async def test_controller_restart_keeps_the_registry(nats_server, bare_client, tmp_path):
    config = ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=5)
    first = Controller(config)
    await first.start()
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        s = await bare_client.create_session()
        await first.aclose()
        second = Controller(config)
        await second.start()
        assert (await bare_client.get_session(s.session_id)).status == "ready"
        out = await s.cmd("echo still")
        assert out.content == "still\n"
        await s.close()
        await second.aclose()
    finally:
        await worker.aclose()


async def _watch_status(client, session_id, wanted):
    """Subscribe now (flushed: nothing published afterwards is missed); a task for the first ``wanted``."""
    sub = await client.nats.subscribe(Subjects().status(session_id))
    await client.nats.flush()

    async def wait():
        try:
            while True:
                info = decode_reply((await sub.next_msg(timeout=10)).data)
                if info.status in wanted:
                    return info
        finally:
            await sub.unsubscribe()

    return asyncio.create_task(wait())


async def _next_status(client, session_id, wanted):
    return await (await _watch_status(client, session_id, wanted))


async def test_pause_freezes_the_sandbox_until_resume(controller, bare_client, nats_server, tmp_path):
    worker = _worker(nats_server, tmp_path)
    await worker.start()
    try:
        s = await bare_client.create_session()
        await s.cmd("echo warm")
        paused = await bare_client.pause_session(s.session_id)
        assert paused.status == "paused"
        assert (await bare_client.get_session(s.session_id)).status == "paused"
        pending = asyncio.create_task(s.cmd("echo thawed"))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a frozen sandbox must not answer"
        resumed = await bare_client.resume_session(s.session_id)
        assert resumed.status == "ready"
        assert (await asyncio.wait_for(pending, 10)).content == "thawed\n"
        await s.close()
    finally:
        await worker.aclose()


async def test_pausing_an_unknown_session_is_unknown_session(controller, bare_client):
    with pytest.raises(RequestError) as info:
        await bare_client.pause_session("snope")
    assert info.value.code == codes.UNKNOWN_SESSION


async def test_a_create_whose_worker_goes_silent_is_placed_elsewhere_quickly(nats_server, tmp_path):
    import signal

    from tests.workers.helpers import start_worker_process, stop

    ctl = Controller(ControllerConfig(nats_url=nats_server.url, create_lapse_s=3.0))
    await ctl.start()
    frozen = await start_worker_process(nats_server.url, tmp_path / "frozen", "wfrozen", "--warm-pool", "1")
    healthy = _worker(nats_server, tmp_path, "whealthy")
    await healthy.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            async def warm() -> None:  # warm: placement prefers it
                while not any(w.worker_id == "wfrozen" and w.warm for w in await client.workers()):
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(warm(), 30)
            frozen.send_signal(signal.SIGSTOP)
            started = asyncio.get_running_loop().time()
            session = await asyncio.wait_for(client.create_session(), 30)
            assert session.info.worker_id == "whealthy"
            assert asyncio.get_running_loop().time() - started < 15  # not the 120 s create timeout
            assert (await session.cmd("echo placed")).content == "placed\n"
            await session.close()
    finally:
        frozen.send_signal(signal.SIGCONT)
        await stop(frozen)
        await healthy.aclose()
        await ctl.aclose()


async def test_creates_waiting_for_a_worker_are_the_backlog_consumers_pending_count(nats_server, bare_client, tmp_path):
    """What KEDA's nats-jetstream scaler reads (compose/kubernetes/deploy/keda-scaledobject.yaml):
    consumer ``pending_creates`` of stream ``CORRAL_BACKLOG`` has one pending message per waiting create."""
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=5, create_queue_timeout_s=30))
    await ctl.start()
    worker = _worker(nats_server, tmp_path, capacity=1)
    await worker.start()
    js = bare_client.nats.jetstream()

    async def pending() -> int:
        return (await js.consumer_info("CORRAL_BACKLOG", "pending_creates")).num_pending
    try:
        first = await bare_client.create_session()
        assert await pending() == 0
        waiting = [asyncio.create_task(bare_client.create_session()) for _ in range(2)]
        async with asyncio.timeout(10):
            while await pending() != 2:
                await asyncio.sleep(0.05)
        await first.close()
        second = await asyncio.wait_for(next(asyncio.as_completed(waiting)), 20)
        async with asyncio.timeout(10):
            while await pending() != 1:  # one placed, one still waiting
                await asyncio.sleep(0.05)
        await second.close()
        both = await asyncio.wait_for(asyncio.gather(*waiting), 20)
        assert await pending() == 0
        [third] = [s for s in both if s is not second]
        await third.close()
    finally:
        await worker.aclose()
        await ctl.aclose()
