"""The remote backend against real executors on loopback (``corral-executor --listen``), over TLS
with a throw-away CA, and over plain TCP."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from workers.backends.contract import run

from actors.controller import Controller, ControllerConfig
from executor.client import ExecutorClient
from protocol import Client, SessionInfo, SessionSpec, codes
from workers.backends import BackendError, RemoteConfig, RemoteExecutor, make_backend
from workers.backends.remote import RemoteBackend
from workers.worker import Worker, WorkerConfig

from .remote_executors import make_pki, start_executor, stop_executor, write_executors_file, write_private


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


@pytest.fixture
async def executors(tmp_path, pki):
    """Two executors serving TLS, as two VMs would."""
    started = await asyncio.gather(*(start_executor(tmp_path / f"vm{i}", pki=pki) for i in range(2)))
    yield list(started)
    await asyncio.gather(*(stop_executor(e) for e in started))


def backend_for(tmp_path, config: RemoteConfig, worker_id: str = "wr") -> RemoteBackend:
    backend = make_backend(config, base_dir=str(tmp_path / "data"), worker_id=worker_id)
    assert isinstance(backend, RemoteBackend)
    return backend




async def test_a_tls_executor_is_claimed_and_runs_commands(tmp_path, executors, pki):
    backend = backend_for(tmp_path, RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file)))
    handle = await backend.create("s-one", SessionSpec(env={"WHO": "remote"}))
    out = await run(backend, handle, "echo $WHO; pwd")
    assert out.content == f"remote\n{executors[0].workdir / 's-one'}\n"  # a fresh directory of its own
    assert handle.workdir == str(executors[0].workdir / "s-one")
    assert await backend.alive(handle) is None


async def test_a_released_executor_serves_the_next_session_afresh(tmp_path, executors, pki):
    backend = backend_for(tmp_path, RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file)))
    first = await backend.create("s-first", SessionSpec(env={"SECRETISH": "1"}))
    await run(backend, first, "echo left > behind.txt; export LATER=1")
    with pytest.raises(BackendError) as busy:
        await backend.create("s-waiting", SessionSpec())  # its only executor is taken
    assert busy.value.code == codes.NO_CAPACITY and "serves session s-first" in str(busy.value)
    await backend.destroy(first)
    assert await backend.alive(first) == f"executor {executors[0].address} now serves no session"
    second = await backend.create("s-second", SessionSpec())
    out = await run(backend, second, "ls -A; echo ${SECRETISH:-unset} ${LATER:-unset}")
    assert out.content == "unset unset\n"
    assert not (executors[0].workdir / "s-first").exists()


async def test_two_workers_never_share_an_executor(tmp_path, executors, pki):
    path = write_executors_file(tmp_path / "ex.json", executors, pki.ca_file)
    a, b = backend_for(tmp_path, RemoteConfig(executors_file=path), "wa"), backend_for(tmp_path, RemoteConfig(executors_file=path), "wb")
    handles = await asyncio.gather(a.create("s-a", SessionSpec()), b.create("s-b", SessionSpec()))
    assert {(h.host, h.port) for h in handles} == {(e.executor.host, e.executor.port) for e in a._targets.values()}
    with pytest.raises(BackendError) as full:
        await a.create("s-c", SessionSpec())
    assert full.value.code == codes.NO_CAPACITY


async def test_a_killed_executor_is_not_alive_and_says_why(tmp_path, executors, pki):
    backend = backend_for(tmp_path, RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file)))
    handle = await backend.create("s-kill", SessionSpec())
    executors[0].kill()
    await executors[0].proc.wait()
    reason = await backend.alive(handle)
    assert reason and reason.startswith(f"executor {executors[0].address} does not answer")
    assert handle.sandbox_id in {h.sandbox_id for h in await backend.inventory()}
    assert await backend.list() == []
    await backend.destroy(handle)  # the executor is gone: only the handle is forgotten
    assert await backend.inventory() == []


async def test_a_restarted_worker_adopts_the_session_the_executor_still_holds(tmp_path, executors, pki):
    config = RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file))
    handle = await backend_for(tmp_path, config).create("s-keep", SessionSpec(env={"K": "v"}))
    fresh = backend_for(tmp_path, config)
    [found] = await fresh.list()
    assert found.session_id == "s-keep" and found.sandbox_id == handle.sandbox_id
    assert (await run(fresh, found, "echo $K")).content == "v\n"


async def test_a_wrong_key_is_refused_with_a_clear_error(tmp_path, executors, pki):
    wrong = write_private(tmp_path / "wrong.key", "not-the-executors-key-at-all")
    backend = backend_for(tmp_path, RemoteConfig(executors=[
        RemoteExecutor(address=executors[0].address, key_file=str(wrong), ca_file=pki.ca_file)]))
    with pytest.raises(BackendError) as refused:
        await backend.create("s-wrong", SessionSpec())
    assert refused.value.code == codes.SANDBOX_FAILED
    assert f"refused the key in {wrong} (401)" in str(refused.value)
    with pytest.raises(BackendError, match="no remote executor accepts this worker"):
        await backend.prepare()


async def test_a_certificate_from_another_ca_is_refused(tmp_path, executors):
    other = make_pki(tmp_path / "other-pki")
    backend = backend_for(tmp_path, RemoteConfig(executors=[
        RemoteExecutor(address=executors[0].address, key_file=executors[0].key_file, ca_file=other.ca_file)]))
    with pytest.raises(BackendError) as refused:
        await backend.create("s-ca", SessionSpec())
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) and refused.value.code == codes.SANDBOX_FAILED


async def test_a_certificate_for_another_name_is_refused_unless_server_name_says_it(tmp_path, executors, pki):
    named = RemoteExecutor(address=executors[0].address, key_file=executors[0].key_file, ca_file=pki.ca_file,
                           server_name="executor.example")
    with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
        await backend_for(tmp_path, RemoteConfig(executors=[named])).create("s-name", SessionSpec())
    localhost = RemoteExecutor(address=executors[0].address, key_file=executors[0].key_file, ca_file=pki.ca_file,
                               server_name="localhost")
    handle = await backend_for(tmp_path, RemoteConfig(executors=[localhost])).create("s-name", SessionSpec())
    assert handle.session_id == "s-name"


async def test_plain_tcp_without_a_ca_file(tmp_path):
    executor = await start_executor(tmp_path / "plain")
    try:
        backend = backend_for(tmp_path, RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", [executor])))
        handle = await backend.create("s-plain", SessionSpec())
        assert (await run(backend, handle, "echo clear")).content == "clear\n"
    finally:
        await stop_executor(executor)


async def test_a_plain_client_gets_nothing_from_a_tls_executor(executors):
    client = ExecutorClient(key="irrelevant", host="127.0.0.1", port=int(executors[0].address.rsplit(":", 1)[1]))
    with pytest.raises(Exception):
        await client.health()
    await client.aclose()


def test_an_executors_file_in_toml_resolves_paths_beside_it(tmp_path):
    (tmp_path / "k").write_text("x" * 32)
    (tmp_path / "ex.toml").write_text('[[executors]]\naddress = "tcp://10.0.0.5:8700"\nkey_file = "k"\n'
                                      'ca_file = "ca.pem"\nserver_name = "vm1.internal"\n')
    from workers.backends._remote_config import load_executors

    [ex] = load_executors(RemoteConfig(executors_file=str(tmp_path / "ex.toml")))
    assert (ex.host, ex.port, ex.key_file, ex.ca_file, ex.server_name) == (
        "10.0.0.5", 8700, str(tmp_path / "k"), str(tmp_path / "ca.pem"), "vm1.internal")


def test_a_bad_address_or_no_executors_is_invalid_spec(tmp_path):
    for config in (RemoteConfig(), RemoteConfig(executors=[RemoteExecutor(address="http://h:1", key_file="k")])):
        with pytest.raises(BackendError) as info:
            make_backend(config, base_dir=str(tmp_path), worker_id="w")
        assert info.value.code == codes.INVALID_SPEC


async def test_a_session_through_nats_on_a_remote_executor(nats_server, tmp_path, executors, pki):
    """Client -> NATS -> controller -> worker (remote backend) -> TLS -> executor, and back; closing
    the session releases the executor."""
    config = RemoteConfig(executors_file=write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file))
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wr-nats", backend=config,
                                 base_dir=str(tmp_path / "w"), warm_pool=0))
    await worker.start()
    probe = backend_for(tmp_path, config, "probe")
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session(env={"WHO": "vm"})
            assert session.info.backend == "remote"
            assert (await session.cmd("echo $WHO")).content == "vm\n"
            [target] = probe._targets.values()
            assert (await probe._health(target))[0].session_id == session.session_id
            await session.close()
            assert (await probe._health(target))[0].session_id == ""
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_corral_worker_backend_remote_survives_its_own_sigkill(nats_server, tmp_path, executors, pki):
    """``corral worker --backend remote --executors FILE``: killed and started again, it adopts the
    session its executor still holds (``recovered``), and the session goes on."""
    from ..helpers import start_worker_process, stop

    path = write_executors_file(tmp_path / "ex.json", executors[:1], pki.ca_file)
    args = ("--backend", "remote", "--executors", path)
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = await start_worker_process(nats_server.url, tmp_path / "w", "wr-cli", *args)
    try:
        async with await Client.connect(nats_server.url) as client:
            session = await client.create_session()
            await session.cmd("export KEPT=yes")
            worker.kill()
            await worker.wait()
            statuses = await client.nats.subscribe(client.subjects.status(session.session_id))
            worker = await start_worker_process(nats_server.url, tmp_path / "w", "wr-cli", *args)
            info = msgspec.msgpack.decode((await statuses.next_msg(timeout=30)).data, type=SessionInfo)
            assert info.status == "recovered"
            assert (await session.cmd("echo $KEPT")).content == "yes\n"
    finally:
        await stop(worker)
        await ctl.aclose()


async def test_corral_up_runs_its_workers_on_the_executors_file(nats_server, tmp_path, executors, pki):
    """``corral up --backend remote --executors FILE``: the deployment's workers claim those executors."""
    from cli.up import Deployment, UpConfig

    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "up"), backend="remote", audit=False,
                      warm_pool=0, executors_file=write_executors_file(tmp_path / "ex.json", executors, pki.ca_file))
    async with Deployment(config) as deployment:
        async with await Client.connect(deployment.url) as client:
            async with await client.create_session() as session:
                assert session.info.backend == "remote"
                assert (await session.cmd("echo up")).content == "up\n"


def test_corral_up_backend_remote_needs_executors():
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["up", "--backend", "remote"])
    assert result.exit_code == 2 and "--executors" in result.output
