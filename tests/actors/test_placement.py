"""Placement: warm and least-loaded workers first, fair queueing when full, draining."""

import asyncio

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, RequestError, codes
from workers.worker import Worker, WorkerConfig


@pytest.fixture
async def cluster(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, create_queue_timeout_s=5))
    await ctl.start()
    started = []

    async def add(name, **kw):
        kw.setdefault("warm_pool", 0)
        w = Worker(WorkerConfig(nats_url=nats_server.url, worker_id=name, base_dir=str(tmp_path / name), **kw))
        await w.start()
        started.append(w)
        return w

    async with await Client.connect(nats_server.url) as client:
        yield add, client
    for w in started:
        await w.aclose()
    await ctl.aclose()


async def test_a_full_cluster_queues_creates_first_come_first_served(cluster):
    add, client = cluster
    await add("w1", capacity=1)
    first = await client.create_session()
    waiting = [asyncio.create_task(client.create_session(labels={"n": str(n)})) for n in range(2)]
    done, _ = await asyncio.wait(waiting, timeout=0.5)
    assert not done, "creates must wait for a slot, not fail"
    await first.close()
    second = await asyncio.wait_for(waiting[0], 10)
    assert second.info.labels == {"n": "0"} and not waiting[1].done()
    await second.close()
    third = await asyncio.wait_for(waiting[1], 10)
    assert third.info.labels == {"n": "1"}
    await third.close()


async def test_a_queued_create_fails_clearly_at_the_end_of_its_wait(cluster):
    add, client = cluster
    await add("w1", capacity=1)
    s = await client.create_session()
    with pytest.raises(RequestError) as info:
        await client.create_session()
    assert info.value.code == codes.NO_CAPACITY and "waited" in info.value.message
    await s.close()


async def test_a_drained_worker_gets_no_new_sessions_and_keeps_its_own(cluster):
    add, client = cluster
    await add("w1")
    await add("w2")
    kept = await client.create_session()
    drained = await client.drain_worker(kept.info.worker_id)
    assert drained.draining
    others = [await client.create_session() for _ in range(3)]
    assert all(s.info.worker_id != kept.info.worker_id for s in others)
    assert (await kept.cmd("echo still")).content == "still\n"
    reopened = await client.drain_worker(kept.info.worker_id, undo=True)
    assert not reopened.draining
    for s in [kept, *others]:
        await s.close()


async def test_draining_every_worker_is_a_clear_error(cluster):
    add, client = cluster
    await add("w1")
    await client.drain_worker("w1")
    with pytest.raises(RequestError) as info:
        await client.create_session()
    assert info.value.code == codes.WORKER_DRAINING and "draining" in info.value.message


async def test_placement_prefers_a_worker_with_a_warm_sandbox(cluster):
    add, client = cluster
    await add("cold")
    warm = await add("warm", warm_pool=1)
    while not warm.info().warm:
        await asyncio.sleep(0.02)
    await warm._heartbeat()
    await asyncio.sleep(0)  # let the controller see it
    s = await client.create_session()
    assert s.info.worker_id == "warm" and s.info.warm
    await s.close()
