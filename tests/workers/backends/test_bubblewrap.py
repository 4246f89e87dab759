"""The bubblewrap backend with real bwrap and a real executor: isolation, limits, lifecycle."""

import asyncio
import importlib.util
import os
from pathlib import Path
import shutil
import sys
import tempfile
import time

import pytest

from workers.backends.contract import run_on

from actors.controller import Controller, ControllerConfig
from executor.client import ExecutorClient
from executor.plugins import PLUGINS, SandboxPlugin
from protocol import Client, CmdOutput, Mount, Resources, SessionSpec, codes, new_id
from workers.backends import BackendError
from workers.backends._bwrap_runtime import build_runtime
from workers.backends.bubblewrap import BubblewrapBackend, BubblewrapConfig
from workers.worker import Worker, WorkerConfig

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


@pytest.fixture
async def backend(tmp_path):
    async with BubblewrapBackend(base_dir=str(tmp_path / "data"), worker_id="wb") as b:
        yield b


@pytest.fixture
async def sandbox(backend):
    """Start sessions on the backend; whatever a test leaves running is destroyed after it."""
    handles = []

    async def start(**spec):
        handle = await backend.create("s-" + new_id(), SessionSpec(**spec))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await backend.destroy(handle)


async def run(handle, command, **fields) -> CmdOutput:
    return await run_on(ExecutorClient(key=handle.key, socket_path=handle.socket_path), command, **fields)


def require_cgroup(backend, controller, handle) -> Path:
    path = backend.cgroup_path(controller, handle.sandbox_id)
    if path is None:
        pytest.skip(f"cgroup v1 '{controller}' hierarchy is not mounted or not writable on this host")
    return path


async def until(predicate, timeout_s=20.0):
    """Wait for a fact on the host (a cgroup counter), bounded by a deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.05)


async def test_echo_round_trip(sandbox):
    handle = await sandbox()
    out = await run(handle, "echo hello from $(hostname)")
    assert out.content == "hello from corral\n" and out.exit_code == 0 and out.working_dir == "/workspace"


async def test_runs_as_uid_1000_without_capabilities(sandbox):
    handle = await sandbox()
    out = await run(handle, "id -u; id -g; grep CapEff /proc/self/status")
    assert out.content.split() == ["1000", "1000", "CapEff:", "0000000000000000"]


async def test_host_files_outside_the_binds_are_invisible(sandbox, tmp_path):
    (tmp_path / "secret").write_text("host only")
    handle = await sandbox()
    out = await run(handle, f"cat {tmp_path / 'secret'}; ls -A /root 2>/dev/null; test -e /etc/shadow; echo shadow=$?")
    assert "host only" not in out.content and "No such file" in out.content
    assert "shadow=1" in out.content
    assert set(out.content.splitlines()[1:-1]) <= {".pyenv"}, "only the interpreter's own dir may show in /root"


async def test_writes_outside_workspace_and_tmp_fail(sandbox, backend, tmp_path):
    handle = await sandbox()
    targets = ["/x", "/usr/x", "/etc/x", "/run/corral/x", "/workspace/ok", "/tmp/ok"]
    out = await run(handle, "; ".join(f"touch {t} 2>/dev/null; echo $?" for t in targets))
    assert out.content.split() == ["1", "1", "1", "1", "0", "0"]
    assert (backend.sandbox_dir(handle) / "workspace" / "ok").exists()


async def test_tmp_is_private(sandbox):
    handle = await sandbox()
    name = f"corral-private-{new_id()}"
    out = await run(handle, f"echo x > /tmp/{name} && ls /tmp")
    assert name in out.content
    assert not os.path.exists(f"/tmp/{name}")


async def connect_from(handle, port, host="127.0.0.1") -> str:
    """Try a TCP connection from inside the sandbox: 'connected' or the last line of the error."""
    probe = (f"python3 -c 'import socket; socket.create_connection((\"{host}\", {port}), timeout=3); "
             "print(\"connected\")' 2>&1 | tail -1")
    return (await run(handle, probe)).content


@pytest.fixture
async def host_server():
    connected = asyncio.Event()

    async def on_connect(reader, writer):
        connected.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connected
    server.close()


async def test_network_none_cannot_reach_the_host(sandbox, host_server):
    port, connected = host_server
    handle = await sandbox()
    assert "ConnectionRefusedError" in await connect_from(handle, port)
    assert not connected.is_set()


async def test_pid_namespace_shows_only_the_sandbox(sandbox):
    handle = await sandbox()
    client = ExecutorClient(key=handle.key, socket_path=handle.socket_path)
    health = await client.health()
    await client.aclose()
    assert health.pid <= 3
    out = await run(handle, "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; ps -eo comm=")
    pids = [int(p) for p in out.content.splitlines()[0].split()]
    assert len(pids) < 10 and max(pids) < 50
    expected = {"bwrap", "python", "python3", f"python3.{sys.version_info.minor}", "bash", "ps", "ls", "grep", "sort", "tr"}
    assert set(out.content.splitlines()[1:]) <= expected


async def test_fork_bomb_is_stopped_by_the_pids_limit(sandbox, backend):
    handle = await sandbox(resources=Resources(pids=64))
    cgroup = require_cgroup(backend, "pids", handle)
    await run(handle, "for i in $(seq 2000); do sleep 100 & done", soft_timeout_s=0.5)

    def refused() -> int:
        return int((cgroup / "pids.events").read_text().split()[1])

    await until(lambda: refused() > 0)
    assert int((cgroup / "pids.current").read_text()) <= 64


async def test_memory_hog_is_killed_by_the_memory_limit(sandbox, backend):
    handle = await sandbox(resources=Resources(memory_mb=128))
    require_cgroup(backend, "memory", handle)
    out = await run(handle, "python3 -c 'b = bytearray(512 << 20); print(\"survived\")'; echo rc=$?")
    assert "survived" not in out.content and "rc=137" in out.content
    assert (await run(handle, "echo still here")).content == "still here\n"


async def test_cpu_limit_sets_the_cfs_quota(sandbox, backend):
    handle = await sandbox(resources=Resources(cpus=0.5))
    cgroup = require_cgroup(backend, "cpu", handle)
    assert (cgroup / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert handle.sandbox_id in (await run(handle, "cat /proc/self/cgroup")).content


async def test_without_writable_cgroups_sandboxes_still_start(tmp_path):
    config = BubblewrapConfig(cgroup_root=str(tmp_path / "no-cgroups"))
    async with BubblewrapBackend(base_dir=str(tmp_path / "data"), worker_id="wn", config=config) as backend:
        handle = await backend.create("s1", SessionSpec(resources=Resources(memory_mb=64, pids=32)))
        try:
            assert backend.cgroup_path("memory", handle.sandbox_id) is None
            assert (await run(handle, "echo unlimited")).content == "unlimited\n"
        finally:
            await backend.destroy(handle)


async def test_destroy_leaves_no_process_and_no_directories(backend, tmp_path):
    handle = await backend.create("s1", SessionSpec())
    await run(handle, "sleep 1000 & setsid sleep 1000 & echo started")
    cgroups = [backend.cgroup_path(c, handle.sandbox_id) for c in ("memory", "pids")]
    await backend.destroy(handle)
    assert await backend.alive(handle) is not None
    leftovers = []
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if handle.sandbox_id.encode() in proc.read_bytes():
                leftovers.append(proc)
        except OSError:
            pass
    assert leftovers == []
    assert not backend.sandbox_dir(handle).exists()
    assert not Path(handle.socket_path).exists()
    assert not any(c is not None and c.exists() for c in cgroups)
    await backend.destroy(handle)  # idempotent


@pytest.mark.parametrize("resources", [Resources(memory_mb=0), Resources(pids=-1), Resources(cpus=0)])
async def test_bad_resources_are_invalid_spec(backend, resources):
    spec = SessionSpec(resources=resources)
    assert backend.pool_key(spec) is None
    with pytest.raises(BackendError) as info:
        await backend.create("s1", spec)
    assert info.value.code == codes.INVALID_SPEC


async def test_unknown_network_is_invalid_spec(backend):
    with pytest.raises(BackendError) as info:
        await backend.prestart(SessionSpec(network="bridge"))
    assert info.value.code == codes.INVALID_SPEC


@pytest.mark.parametrize("workdir", ["/etc/app", "../outside", "/workspace/../usr"])
async def test_workdir_outside_writable_areas_is_invalid_spec(backend, workdir):
    with pytest.raises(BackendError) as info:
        await backend.create("s1", SessionSpec(workdir=workdir))
    assert info.value.code == codes.INVALID_SPEC
    assert await backend.list() == []


async def test_warm_sandbox_takes_the_sessions_env_and_workdir_at_claim(backend):
    warm = await backend.prestart(SessionSpec())
    handle = await backend.claim(warm, "s1", SessionSpec(env={"WHO": "warm"}, workdir="proj/a"))
    try:
        out = await run(handle, "echo $WHO; pwd")
        assert out.content == "warm\n/workspace/proj/a\n"
    finally:
        await backend.destroy(handle)


async def test_pool_key_follows_network_and_resources_only(backend):
    base = backend.pool_key(SessionSpec())
    assert backend.pool_key(SessionSpec(env={"A": "1"}, workdir="x", timeout_s=5)) == base
    assert backend.pool_key(SessionSpec(network="egress")) != base
    assert backend.pool_key(SessionSpec(resources=Resources(memory_mb=256))) != base


async def test_a_restarted_backend_lists_and_destroys_running_sandboxes(backend, tmp_path):
    handle = await backend.create("s1", SessionSpec())
    async with BubblewrapBackend(base_dir=str(tmp_path / "data"), worker_id="wb") as restarted:
        assert [h.session_id for h in await restarted.list()] == ["s1"]
        assert (await run(handle, "echo survived")).content == "survived\n"
        await restarted.destroy(handle)
        assert await restarted.list() == []
        assert await restarted.alive(handle) is not None


ORPHANING_WORKER = """
import asyncio, os, sys
from protocol import SessionSpec
from workers.backends.bubblewrap import BubblewrapBackend, BubblewrapConfig

async def main():
    handle = await BubblewrapBackend(base_dir=sys.argv[1], worker_id="wb").create("s-orphan", SessionSpec())
    print(handle.sandbox_id, flush=True)
    os._exit(0)  # the worker dies without destroying anything

asyncio.run(main())
"""


async def test_a_sandbox_outlives_the_worker_process_that_started_it(backend, tmp_path):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ORPHANING_WORKER, str(tmp_path / "data"),
                                                stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    [handle] = await backend.list()
    assert handle.sandbox_id == stdout.decode().split()[-1] and handle.session_id == "s-orphan"
    assert (await run(handle, "echo still running")).content == "still running\n"
    await backend.destroy(handle)
    assert await backend.list() == []


async def test_a_session_on_a_bubblewrap_worker_runs_commands(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="wbw", backend="bubblewrap",
                                 base_dir=str(tmp_path / "w"), warm_pool=1))
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            async with await client.create_session(env={"WHO": "bwrap"}, workdir="proj") as s:
                out = await s.cmd("echo $WHO; pwd; hostname")
                assert out.content == "bwrap\n/workspace/proj\ncorral\n"
                assert s.info.backend == "bubblewrap"
    finally:
        await worker.aclose()
        await ctl.aclose()


@pytest.fixture
def shared_dir():
    """A host directory the sandbox user can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="corral-mount-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


async def test_an_allowed_mount_is_visible_read_only(backend, sandbox, shared_dir):
    shared = shared_dir / "mirrors"
    shared.mkdir()
    (shared / "repo.txt").write_text("mirror\n")
    backend.allowed_mounts = (str(shared_dir),)
    spec = dict(mounts=[Mount(source=str(shared), target="/mirrors")])
    backend.validate(SessionSpec(**spec))
    handle = await sandbox(**spec)
    out = await run(handle, "cat /mirrors/repo.txt; touch /mirrors/x 2>/dev/null || echo refused")
    assert out.content == "mirror\nrefused\n"


async def test_a_plugin_whose_modules_the_worker_has_validates(backend):
    pytest.importorskip("ipykernel")
    backend.validate(SessionSpec(plugins=["jupyter"]))


class _Missing(SandboxPlugin):
    """A plugin whose module no interpreter has."""

    modules = ("corral_test_no_such_module",)

    async def handle(self, action, emit):
        raise AssertionError("never started")


async def test_a_plugin_whose_module_the_worker_lacks_is_plugin_unavailable_naming_it(backend):
    PLUGINS.register("corral-test-missing", _Missing)
    try:
        with pytest.raises(BackendError) as info:
            backend.validate(SessionSpec(plugins=["corral-test-missing"]))
    finally:
        PLUGINS._items.pop("corral-test-missing")
    assert info.value.code == codes.PLUGIN_UNAVAILABLE and "corral_test_no_such_module" in str(info.value)


async def test_sessions_with_plugin_modules_have_a_warm_pool_of_their_own(backend):
    assert backend.pool_key(SessionSpec(plugins=["jupyter"])) != backend.pool_key(SessionSpec())
    assert backend.pool_key(SessionSpec(plugins=["jupyter"])) == backend.pool_key(SessionSpec(plugins=["agent_skills"]))


def test_the_plugins_runtime_carries_the_kernels_distributions_with_their_compiled_libraries(tmp_path):
    pytest.importorskip("ipykernel")
    import zmq

    core = build_runtime(tmp_path, {"hosts": "x"})
    plugins = build_runtime(tmp_path, {"hosts": "x"}, ("ipykernel", "corral_skills"))
    assert plugins != core and not (core / "ipykernel").exists()
    again = build_runtime(tmp_path, {"hosts": "x"}, ("ipykernel", "corral_skills"))
    assert again == plugins  # content-named: made once
    assert (plugins / "ipykernel_launcher.py").is_file() and (plugins / "corral_skills" / "__init__.py").is_file()
    libs = Path(zmq.__file__).parent.parent / "pyzmq.libs"
    assert [p.name for p in libs.iterdir()] == [p.name for p in (plugins / "pyzmq.libs").iterdir()]
    assert list((plugins / "zmq").rglob("*.so"))
    source = plugins / "traitlets" / "__init__.py"  # a dependency's dependency, its pip-written bytecode still valid
    assert (plugins / "traitlets" / "__pycache__").is_dir()
    assert source.stat().st_mtime == (Path(importlib.util.find_spec("traitlets").origin)).stat().st_mtime


async def test_an_unknown_plugin_is_invalid_spec(backend):
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(plugins=["no-such-plugin"]))
    assert info.value.code == codes.INVALID_SPEC
