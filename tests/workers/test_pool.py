"""Warm pools: a create claims a prestarted sandbox; env and workdir never force a cold start."""

import asyncio

import pytest

from protocol import Client, RequestError, codes
from workers.worker import Worker, WorkerConfig
from actors.controller import Controller, ControllerConfig


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
