"""The Docker backend under a whole worker: Client -> NATS -> Controller -> Worker -> container."""

from __future__ import annotations

import asyncio

import aiodocker
import msgspec
import pytest

from actors.controller import Controller, ControllerConfig
from protocol import (
    Client,
    CmdChunk,
    CmdRun,
    Error,
    SandboxCreate,
    SessionInfo,
    SessionSpec,
    codes,
    decode_observation,
    encode,
    new_id,
)
from workers.backends import BackendError
from workers.backends.docker import DockerBackend, DockerConfig
from workers.worker import Worker, WorkerConfig

from .test_docker import ENGINE, remove_worker_sandboxes, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow]


@pytest.fixture
async def deployment(nats_server, tmp_path, runtime_image):
    worker_id = "wd-" + new_id()[:10]
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    backend = DockerBackend(base_dir=str(tmp_path / "w"), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id=worker_id, backend="docker",
                                 base_dir=str(tmp_path / "w"), warm_pool=1), backend=backend)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            yield worker, client
    finally:
        await worker.aclose()
        await ctl.aclose()
        await remove_worker_sandboxes(str(tmp_path / "w"), worker_id, runtime_image)


async def _until_warm(worker: Worker) -> None:
    while not worker.info().warm:
        await asyncio.sleep(0.02)


async def test_session_on_a_warm_docker_sandbox_round_trips(deployment):
    worker, client = deployment
    await asyncio.wait_for(_until_warm(worker), 30)
    async with await client.create_session(env={"WHO": "container"}) as session:
        assert session.info.warm and session.info.backend == "docker"
        out = await session.cmd("echo $WHO; id -u; pwd")
        assert out.content == "container\n1000\n/workspace\n"


async def test_container_killed_mid_action_answers_sandbox_died_and_the_session_is_lost(deployment):
    # Straight to the worker (no placement): the failure path is the worker's own.
    worker, client = deployment
    sid = "s-" + new_id()
    info = await worker.create_session(SandboxCreate(session_id=sid, spec=SessionSpec()))
    assert isinstance(info, SessionInfo) and info.status == "ready"
    nc = client.nats
    observations = await nc.subscribe(client.subjects.observations(sid))
    statuses = await nc.subscribe(client.subjects.status(sid))
    action = CmdRun(id=new_id(), command="echo started; sleep 120")
    await nc.jetstream().publish(client.subjects.action(sid, "cmd_run"), encode(action), headers={"Nats-Msg-Id": action.id})

    while True:  # the action is running once its first chunk is out
        obs = decode_observation((await observations.next_msg(timeout=20)).data)
        if isinstance(obs, CmdChunk) and obs.cause == action.id:
            break
    handle = worker._runners[sid].handle
    async with aiodocker.Docker() as docker:
        await docker.containers.container(handle.container_id).kill(signal="SIGKILL")

    while True:
        obs = decode_observation((await observations.next_msg(timeout=20)).data)
        if isinstance(obs, Error) and obs.cause == action.id:
            break
    assert obs.code == codes.SANDBOX_DIED
    seen = []
    while not seen or seen[-1].status != "lost":
        seen.append(msgspec.msgpack.decode((await statuses.next_msg(timeout=20)).data, type=SessionInfo))
    assert "sandbox died" in (seen[-1].reason or "")
    assert await worker.backend.alive(handle) == "container removed"  # the lost session's container is gone


async def test_gvisor_on_an_engine_without_runsc_is_invalid_spec(tmp_path):
    from workers.backends.docker import DockerBackend

    backend = DockerBackend(base_dir=str(tmp_path), worker_id="wg")
    try:
        await backend.engine()
        with pytest.raises(BackendError) as info:
            backend.validate(SessionSpec(isolation="gvisor"))
        assert info.value.code == "invalid_spec" and "runsc" in str(info.value)
    finally:
        await backend.aclose()


async def test_gvisor_on_the_local_backend_is_invalid_spec(tmp_path):
    from workers.backends.local import LocalBackend

    with pytest.raises(BackendError) as info:
        LocalBackend(base_dir=str(tmp_path), worker_id="wl", warn=False).validate(SessionSpec(isolation="gvisor"))
    assert info.value.code == "invalid_spec"


async def test_a_session_that_asked_to_be_kept_leaves_its_stopped_container(deployment):
    worker, client = deployment
    session = await client.create_session(keep=True)
    await session.cmd("echo evidence > /workspace/notes.txt")
    handle = worker._runners[session.session_id].handle
    await session.close()
    async with aiodocker.Docker() as docker:
        container = docker.containers.container(handle.container_id)
        state = (await container.show())["State"]
        assert state["Running"] is False
        await container.delete(force=True)
    # The bind-mounted workspace stays on the host with the sandbox's files.
    assert "evidence" in (worker.backend._root / handle.sandbox_id / "workspace" / "notes.txt").read_text()


async def test_keep_on_a_backend_that_cannot_is_invalid_spec(tmp_path):
    from workers.backends.local import LocalBackend

    with pytest.raises(BackendError) as info:
        LocalBackend(base_dir=str(tmp_path), worker_id="wk", warn=False).validate(SessionSpec(keep=True))
    assert info.value.code == "invalid_spec"
