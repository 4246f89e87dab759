"""The Docker backend under attack or failure: leaks from dying workers, dead sandboxes, their reasons."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiodocker
import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdRun, Error, SessionSpec, codes, new_id
from workers.backends.docker import DockerBackend, DockerConfig
from workers.worker import Worker, WorkerConfig

from .test_docker import ENGINE, remove_worker_sandboxes, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow]

START_AND_HANG = """
import asyncio, sys
from protocol import SessionSpec
from workers.backends.docker import DockerBackend, DockerConfig
async def main():
    backend = DockerBackend(base_dir=sys.argv[1], worker_id=sys.argv[2],
                            config=DockerConfig(image=sys.argv[3], executor_cmd=("sleep", "300"), start_timeout_s=300))
    await backend.prestart(SessionSpec())
asyncio.run(main())
"""


async def _containers(worker_id: str) -> list[dict]:
    async with aiodocker.Docker() as docker:
        filters = json.dumps({"label": [f"corral.worker={worker_id}"]})
        return [c._container for c in await docker.containers.list(all=True, filters=filters)]


@pytest.fixture
def worker_id() -> str:
    return "wh-" + new_id()[:10]


@pytest.fixture
async def cleanup(tmp_path, worker_id, runtime_image):
    yield
    await remove_worker_sandboxes(str(tmp_path / "w"), worker_id, runtime_image)


def _worker(nats_server, tmp_path, worker_id, runtime_image, **kw) -> Worker:
    backend = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    kw.setdefault("warm_pool", 0)
    return Worker(WorkerConfig(nats_url=nats_server.url, worker_id=worker_id, backend="docker",
                               base_dir=str(tmp_path / "w"), **kw), backend=backend)


async def test_a_container_left_by_a_worker_killed_mid_start_is_removed_when_a_worker_starts(
        nats_server, tmp_path, worker_id, runtime_image, cleanup):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", START_AND_HANG, str(tmp_path / "w"), worker_id,
                                                runtime_image)
    try:
        async def container_exists() -> None:
            while not await _containers(worker_id):
                await asyncio.sleep(0.1)
        await asyncio.wait_for(container_exists(), 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    worker = _worker(nats_server, tmp_path, worker_id, runtime_image)
    await worker.start()
    try:
        assert await _containers(worker_id) == []
    finally:
        await worker.aclose()


async def test_the_sweeper_removes_exited_and_never_started_containers(nats_server, tmp_path, worker_id, runtime_image,
                                                                       cleanup):
    other = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    exited = await other.prestart(SessionSpec())
    async with aiodocker.Docker() as docker:
        await docker.containers.container(exited.container_id).kill(signal="SIGKILL")
        created = await docker.containers.create(  # made, never started: what a start cut short leaves
            {"Image": runtime_image, "Cmd": ["true"],
             "Labels": {"corral.sandbox": "dnever", "corral.worker": worker_id,
                        "corral.deployment": other._deployment}}, name=f"corral-dnever-{worker_id}")
    await other.aclose()
    worker = _worker(nats_server, tmp_path, worker_id, runtime_image, sweep_grace_s=0)
    await worker.start()  # its start already removes what is dead; a later sweep finds the rest
    try:
        assert await _containers(worker_id) == []
        async with aiodocker.Docker() as docker:
            await docker.containers.create(
                {"Image": runtime_image, "Cmd": ["true"],
                 "Labels": {"corral.sandbox": "dlater", "corral.worker": worker_id,
                            "corral.deployment": other._deployment}}, name=f"corral-dlater-{worker_id}")
        assert await worker.sweep_once() == 1
        assert await _containers(worker_id) == []
    finally:
        await worker.aclose()
    assert created.id


async def test_a_sandbox_that_dies_mid_action_is_reported_with_the_engine_s_reason(nats_server, tmp_path, worker_id,
                                                                                   runtime_image, cleanup):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = _worker(nats_server, tmp_path, worker_id, runtime_image)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            out = await session.run(CmdRun(id=new_id(), command="kill -9 $PPID; sleep 5"))  # the executor itself
            assert isinstance(out, Error) and out.code == codes.SANDBOX_DIED, out
            assert "exit code 137" in out.message, out.message
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_warm_sandboxes_stay_bounded_and_within_capacity(nats_server, tmp_path, worker_id, runtime_image, cleanup):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    # One warm sandbox per pool key, two at most over all keys, and all of it within capacity.
    worker = _worker(nats_server, tmp_path, worker_id, runtime_image, capacity=4, warm_pool=1, warm_max=2)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            for n in range(6):  # six distinct pool keys
                session = await client.create_session(resources={"cpus": 0.1 + n / 10})
                await session.close()
                assert worker.info().warm <= 2 and worker._pool.total <= 2
            sessions = [await client.create_session(resources={"cpus": 0.05}) for _ in range(4)]
            assert worker._pool.total == 0  # a full worker keeps no warm sandboxes...

            async def settled() -> None:  # ...and the evicted ones are removed
                while len([c for c in await _containers(worker_id) if c["State"] != "exited"]) > 4:
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(settled(), 30)
            for session in sessions:
                await session.close()
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_a_sandbox_that_swaps_its_socket_for_a_symlink_reaches_nothing(nats_server, tmp_path, worker_id,
                                                                             runtime_image, cleanup):
    from executor.client import ExecutorImpostor

    connections = []

    async def fake(reader, writer):  # stands in for any host service the symlink could point at
        connections.append(await reader.read(100))
        writer.close()

    decoy_path = str(tmp_path / "decoy.sock")
    decoy = await asyncio.start_unix_server(fake, decoy_path)
    backend = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    try:
        handle = await backend.create("s-swap", SessionSpec())
        client = backend.client(handle)
        out = [o async for o in client.execute(CmdRun(id=new_id(), command=f"rm /run/corral/executor.sock && "
                                                                            f"ln -s {decoy_path} /run/corral/executor.sock"))]
        assert out[-1].exit_code == 0, out[-1]
        await client.aclose()
        with pytest.raises(ExecutorImpostor):
            await backend.client(handle).health()  # a new connection, as after a worker restart
        assert connections == []
    finally:
        decoy.close()
        await backend.aclose()


async def test_neither_a_socket_swap_nor_a_crafted_lookup_makes_the_worker_talk_to_the_engine(
        nats_server, tmp_path, worker_id, runtime_image, cleanup):
    probe = "corral.probe=" + new_id()
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = _worker(nats_server, tmp_path, worker_id, runtime_image)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            await session.cmd("rm /run/corral/executor.sock && ln -s /var/run/docker.sock /run/corral/executor.sock")
            body = json.dumps({"Image": runtime_image, "Labels": {probe.split("=")[0]: probe.split("=")[1]}})
            smuggled = (f"x HTTP/1.1\r\nHost: docker\r\n\r\nPOST /containers/create HTTP/1.1\r\nHost: docker\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}")
            reply = await client.nats.request(client.subjects.lookup(session.session_id), smuggled.encode(), timeout=10)
            assert b"bad_payload" in reply.data
            await client.nats.request(client.subjects.lookup(session.session_id), b"plain-id", timeout=10)
            worker._runners[session.session_id]._ctx.client._idle.clear()  # drop pooled connections: next call connects
            out = await session.cmd("echo after")
            assert isinstance(out, Error) and out.code in (codes.SANDBOX_DIED, codes.SANDBOX_FAILED), out
        async with aiodocker.Docker() as docker:
            assert await docker.containers.list(all=True, filters=json.dumps({"label": [probe]})) == []
    finally:
        async with aiodocker.Docker() as docker:  # clean up, should the probe ever have got through
            for container in await docker.containers.list(all=True, filters=json.dumps({"label": [probe]})):
                await container.delete(force=True)
        await worker.aclose()
        await ctl.aclose()


PROBE = """
import socket, sys
port, addresses = int(sys.argv[1]), sys.argv[2:]
reached = []
for address in addresses:
    s = socket.socket()
    s.settimeout(1.5)
    try:
        s.connect((address, port))
        reached.append(address)
    except OSError:
        pass
    finally:
        s.close()
print("reached:" + ",".join(reached))
"""


async def test_an_egress_container_reaches_neither_the_broker_nor_any_host_address(nats_server, tmp_path, worker_id,
                                                                                   runtime_image, cleanup):
    from workers.backends._fence import host_addresses

    accepted = []

    async def on_connect(reader, writer):
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    everywhere = await asyncio.start_server(on_connect, "0.0.0.0", 0)  # a host service on every address
    open_port = everywhere.sockets[0].getsockname()[1]
    broker_port = int(nats_server.url.rsplit(":", 1)[1])
    backend = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    try:
        handle = await backend.create("s-egress", SessionSpec(network="egress"))
        addresses = ["127.0.0.1", *host_addresses()]
        client = backend.client(handle)
        for port in (broker_port, open_port):
            await client.execute(CmdRun(id=new_id(), command=f"cat > /tmp/probe.py <<'EOF'\n{PROBE}\nEOF")).__anext__()
            out = [o async for o in client.execute(CmdRun(
                id=new_id(), command=f"python3 /tmp/probe.py {port} {' '.join(addresses)}"))]
            assert out[-1].content.startswith("reached:\n"), out[-1].content
        assert accepted == []
        await client.aclose()
    finally:
        everywhere.close()
        await backend.aclose()
