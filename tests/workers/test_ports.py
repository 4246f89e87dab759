"""Forwarded ports end to end: Client -> controller -> worker -> host port -> executor tunnel -> a server in the sandbox.

Every backend: local, bubblewrap and Docker with ``network: none`` (the sandbox has no network; the
bytes travel through the executor's private channel).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, RequestError, codes, new_id
from workers._ports import PortAllocator
from workers.worker import Worker, WorkerConfig

from .backends.test_docker import ENGINE, remove_worker_sandboxes, runtime_image  # noqa: F401  (fixture)
from .ports_helpers import free_port, http_get, refused, serve_inside


@pytest.fixture(params=[
    "local",
    pytest.param("bubblewrap", marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")),
    pytest.param("docker", marks=pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")),
])
def kind(request):
    return request.param


@pytest.fixture
def image(kind, request):
    return request.getfixturevalue("runtime_image") if kind == "docker" else None


@pytest.fixture
async def stack(kind, image, nats_server, tmp_path):
    """A controller and one worker of the backend under test (Docker: network none); yields (worker, client)."""
    worker_id = "wp-" + new_id()[:10]
    backend = None
    if kind == "docker":
        from workers.backends.docker import DockerBackend, DockerConfig

        backend = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=image))
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id=worker_id, backend=kind, base_dir=str(tmp_path / "w"),
                                 warm_pool=0), backend=backend)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            yield worker, client
    finally:
        await worker.aclose()
        await ctl.aclose()
        if kind == "docker":
            await remove_worker_sandboxes(str(tmp_path / "w"), worker_id, image)


async def test_a_server_inside_the_sandbox_is_reached_at_the_exposed_url_and_released_on_close(stack):
    worker, client = stack
    port = free_port()
    async with await client.create_session() as session:
        digest = await serve_inside(session, port)
        info = await session.expose(port)
        assert (info.session_id, info.port, info.host, info.purpose) == (session.session_id, port, "127.0.0.1", "apps")
        assert info.url == f"http://127.0.0.1:{info.host_port}/" and 50000 <= info.host_port <= 59999
        status, _, body = await http_get(info.host, info.host_port, "/small.txt")
        assert (status, body) == (200, b"hello\n")
        status, headers, body = await http_get(info.host, info.host_port, "/big.bin")
        assert status == 200 and int(headers["content-length"]) == len(body) == 4 * 1024 * 1024
        assert hashlib.sha256(body).hexdigest() == digest
        assert (await client.get_session(session.session_id)).ports == [info]
    assert await refused(info.host, info.host_port)
    with PortAllocator(ranges={"apps": (info.host_port, info.host_port)}) as probe:
        assert probe.reserve(info.host_port)  # its lock is free again
    assert worker._forwards.statistics()["forwards"] == 0


async def test_a_restarted_worker_reopens_the_forwards_of_the_sandboxes_it_adopts(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    config = WorkerConfig(nats_url=nats_server.url, worker_id="wr-" + new_id()[:8], backend="local",
                          base_dir=str(tmp_path / "w"), warm_pool=0)
    worker = Worker(config)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            port = free_port()
            await serve_inside(session, port, size=1000)
            info = await session.expose(port)
            await worker.aclose(destroy_sandboxes=False)  # the sandbox lives on; its forward does not
            assert await refused(info.host, info.host_port)
            worker = Worker(config)
            await worker.start()  # adopts the sandbox and opens its forward again, on the same host port
            assert worker._forwards.ports(session.session_id) == [info]
            assert (await http_get(info.host, info.host_port, "/small.txt"))[2] == b"hello\n"

            async def registry_lists_it() -> None:
                while (await client.get_session(session.session_id)).ports != [info]:
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(registry_lists_it(), 10)
            await session.close()
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_exposing_through_a_worker_with_an_exhausted_range_is_no_capacity(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    only = free_port()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wx-" + new_id()[:8], backend="local",
                                 base_dir=str(tmp_path / "w"), warm_pool=0, port_ranges={"apps": (only, only)}))
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client, await client.create_session() as session:
            assert (await session.expose(8123)).host_port == only
            with pytest.raises(RequestError) as caught:
                await session.expose(8124)
            assert caught.value.code == codes.NO_CAPACITY
    finally:
        await worker.aclose()
        await ctl.aclose()
