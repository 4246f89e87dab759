"""Two deployments on one host (their own broker and data dir) never touch each other's sandboxes."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from actors.embedded import EmbeddedNats
from cli.up import Deployment, UpConfig
from protocol import Client

from .backends.test_docker import ENGINE

pytestmark = pytest.mark.slow

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.skipif(not ENGINE, reason="no Docker engine answers"))]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_second_deployment_neither_adopts_nor_sweeps_the_first_ones_sandboxes(tmp_path, backend):
    async with AsyncExitStack() as stack:
        deployments, sessions = [], []
        for name in ("one", "two"):
            broker = await stack.enter_async_context(EmbeddedNats(str(tmp_path / name / "nats")))
            dep = await stack.enter_async_context(Deployment(UpConfig(
                nats_url=broker.url, data_dir=str(tmp_path / name / "corral"), backend=backend, audit=False,
                warm_pool=1)))
            client = await stack.enter_async_context(await Client.connect(dep.url))
            session = await client.create_session()
            stack.push_async_callback(session.close)
            deployments.append(dep)
            sessions.append(session)
        one, two = deployments
        assert one.workers[0].worker_id != two.workers[0].worker_id
        # What a restarted or sweeping worker of the second deployment does at once, and again later:
        for worker in two.workers:
            assert await worker.sweep_once() == 0
        for worker in one.workers + two.workers:
            assert await worker.watch_once() == []
        for session in sessions:
            out = await session.cmd("echo still here")
            assert out.content == "still here\n", out
