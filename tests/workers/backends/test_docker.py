"""The Docker backend against the real engine: hardening, limits, lifecycle, failures.

Skipped when no engine answers. The sandbox image comes from ``runtime_image`` (session-scoped):
``images.ensure_runtime_image``, or, where the image builder is unavailable, a dev runtime image
built offline from this checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
from pathlib import Path
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import AsyncIterator

import aiodocker
from aiodocker.exceptions import DockerError
import pytest

from executor.client import ExecutorClient, ExecutorUnavailable
from protocol import Client, CmdOutput, CmdRun, Mount, Resources, SessionSpec, codes, new_id
from workers.backends import BackendError
from workers.backends.docker import DockerBackend, DockerConfig, ImageNotFound

REPO = Path(__file__).resolve().parents[3]
DEV_IMAGE = "corral-runtime:dev-test"
BASE_IMAGE = "corral-base:bookworm"


def _engine_answers() -> bool:
    async def ping() -> bool:
        try:
            docker = aiodocker.Docker()
        except (ValueError, OSError):
            return False
        try:
            await asyncio.wait_for(docker.version(), 5)
            return True
        except (DockerError, OSError, asyncio.TimeoutError):
            return False
        finally:
            await docker.close()
    return asyncio.run(ping())


ENGINE = _engine_answers()
pytestmark = pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")


# --------------------------------------------------------------------- image
def _source_digest() -> str:
    digest = hashlib.sha256()
    for top in ("protocol", "executor"):
        for path in sorted((REPO / top).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    digest.update((REPO / "pyproject.toml").read_bytes())
    return digest.hexdigest()[:16]


DEV_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN groupadd -g 1000 corral && useradd -m -u 1000 -g 1000 -s /bin/bash corral \\
 && python3 -m venv /opt/corral/venv && mkdir -p /workspace && chown corral:corral /workspace
COPY wheels/ /tmp/wheels/
RUN /opt/corral/venv/bin/pip install -q --no-index --no-deps /tmp/wheels/corral-*.whl \\
 && /opt/corral/venv/bin/pip install -q --no-index --find-links /tmp/wheels msgspec \\
 && rm -rf /tmp/wheels
ENV PATH=/opt/corral/venv/bin:$PATH
USER corral
WORKDIR /workspace
"""


def _build_dev_image(docker_digest: str) -> None:
    """corral-runtime:dev-test from this checkout, offline: host-built wheels copied into the image."""
    with tempfile.TemporaryDirectory() as tmp:
        src, wheels = Path(tmp) / "src", Path(tmp) / "ctx" / "wheels"
        wheels.mkdir(parents=True)
        # Build from a copy so setuptools' build/ and egg-info never land in the checkout.
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                 "tests", ".pytest_cache", "docs"))
        pip = [str(REPO / ".venv/bin/pip"), "-q"]
        subprocess.run([*pip, "wheel", "--no-deps", str(src), "-w", str(wheels)], check=True)
        subprocess.run([*pip, "download", "msgspec", "--only-binary=:all:", "-d", str(wheels)], check=True)
        (Path(tmp) / "ctx" / "Dockerfile").write_text(DEV_DOCKERFILE)
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            tar.add(Path(tmp) / "ctx", arcname=".")

        context.seek(0)

        async def build() -> None:
            async with aiodocker.Docker() as docker:
                await docker.images.build(fileobj=context, encoding="identity", tag=DEV_IMAGE,
                                          labels={"corral.test.src": docker_digest}, rm=True)
        asyncio.run(build())


def _dev_image() -> str:
    digest = _source_digest()

    async def current() -> str | None:
        async with aiodocker.Docker() as docker:
            try:
                return ((await docker.images.inspect(DEV_IMAGE))["Config"].get("Labels") or {}).get("corral.test.src")
            except DockerError:
                return None
    if asyncio.run(current()) != digest:
        print(f"building {DEV_IMAGE} from {REPO}", file=sys.stderr)
        _build_dev_image(digest)
    return DEV_IMAGE


def _ensure_runtime_image() -> str | None:
    """The real runtime image from ``images`` (built with progress when missing); None without the builder."""
    try:
        from images import ensure_runtime_image
    except ImportError:
        return None

    async def ensure() -> str:
        async with aiodocker.Docker() as docker:
            return await ensure_runtime_image(docker)
    return asyncio.run(ensure())


@pytest.fixture(scope="session")
def runtime_image() -> str:
    return _ensure_runtime_image() or _dev_image()


# ------------------------------------------------------------------ helpers
async def _remove_worker_containers(worker_id: str) -> None:
    async with aiodocker.Docker() as docker:
        filters = json.dumps({"label": [f"corral.worker={worker_id}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            try:
                await container.delete(force=True)
            except DockerError as exc:
                if exc.status not in (404, 409):  # gone, or being removed by the worker already
                    raise


async def remove_worker_sandboxes(base_dir: str, worker_id: str, image: str | None) -> None:
    """Everything a test's worker left: containers and their host dirs (sockets live outside tmp_path)."""
    async with DockerBackend(base_dir=base_dir, worker_id=worker_id, config=DockerConfig(image=image)) as cleanup:
        await cleanup.sweep(set())
    await _remove_worker_containers(worker_id)


@contextlib.asynccontextmanager
async def docker_deployment(nats_url: str, base_dir: str, image: str | None, *, prefix: str = "wd") -> AsyncIterator[Client]:
    """A controller and one Docker worker (no warm pool) on ``nats_url``, and a client of theirs;
    the worker's containers and host dirs are removed afterwards whatever happens. ``image`` None:
    the worker picks (and builds on first need) the image a session's plugins need."""
    from actors.controller import Controller, ControllerConfig
    from workers.worker import Worker, WorkerConfig

    worker_id = f"{prefix}-" + new_id()[:10]
    ctl = Controller(ControllerConfig(nats_url=nats_url))
    await ctl.start()
    backend = DockerBackend(base_dir=base_dir, worker_id=worker_id, config=DockerConfig(image=image))
    worker = Worker(WorkerConfig(nats_url=nats_url, worker_id=worker_id, backend="docker", base_dir=base_dir,
                                 warm_pool=0), backend=backend)
    await worker.start()
    try:
        async with await Client.connect(nats_url) as client:
            yield client
    finally:
        await worker.aclose()
        await ctl.aclose()
        await remove_worker_sandboxes(base_dir, worker_id, image)


@pytest.fixture
def worker_id() -> str:
    return "wt-" + new_id()[:10]


@pytest.fixture
async def make_backend(tmp_path, worker_id, runtime_image):
    """DockerBackends of one test's worker; its containers are removed afterwards whatever happens."""
    backends: list[DockerBackend] = []

    def make(**config) -> DockerBackend:
        config.setdefault("image", runtime_image)
        backend = DockerBackend(base_dir=str(tmp_path / "data"), worker_id=worker_id, config=DockerConfig(**config))
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.aclose()
    await remove_worker_sandboxes(str(tmp_path / "data"), worker_id, runtime_image)


@pytest.fixture
async def backend(make_backend):
    return make_backend()


@pytest.fixture
async def sandbox(backend):
    """Start a session's sandbox: ``await sandbox(**spec)``."""
    async def start(**spec) -> object:
        return await backend.create("s-" + new_id(), SessionSpec(**spec))
    return start


def client_for(handle) -> ExecutorClient:
    return ExecutorClient(key=handle.key, socket_path=handle.socket_path, host=handle.host, port=handle.port)


async def run(handle, command: str, **fields) -> CmdOutput:
    client = client_for(handle)
    try:
        final = [o async for o in client.execute(CmdRun(id=new_id(), command=command, **fields))][-1]
    finally:
        await client.aclose()
    assert isinstance(final, CmdOutput), final
    return final


async def inspect(handle) -> dict:
    async with aiodocker.Docker() as docker:
        return await docker.containers.container(handle.container_id).show()


# ---------------------------------------------------------------- behaviour
async def test_echo_round_trip(sandbox):
    handle = await sandbox()
    out = await run(handle, "echo hi")
    assert (out.content, out.exit_code, out.status, out.working_dir) == ("hi\n", 0, "completed", "/workspace")
    assert out.session_id == handle.session_id


async def test_sandbox_runs_unprivileged(sandbox):
    out = await run(await sandbox(), "id -u; grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status")
    lines = out.content.split("\n")
    assert lines[0] == "1000"
    status = dict(line.split(":\t") for line in lines[1:] if line)
    assert status == {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}


async def test_pid_1_is_an_init_that_reaps(sandbox):
    out = await run(await sandbox(), "cat /proc/1/comm")
    assert out.content.strip().startswith("tini")


async def test_network_none_has_only_loopback(sandbox):
    handle = await sandbox()
    assert (await run(handle, "ls /sys/class/net")).content.split() == ["lo"]
    probe = "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\""
    assert (await run(handle, probe)).exit_code != 0


async def test_egress_network_has_an_interface(sandbox):
    handle = await sandbox(network="egress")
    assert "eth0" in (await run(handle, "ls /sys/class/net")).content.split()
    assert (await inspect(handle))["HostConfig"]["NetworkMode"] == "bridge"


async def test_session_resources_are_applied_to_the_container(sandbox):
    handle = await sandbox(resources=Resources(cpus=0.5, memory_mb=256, pids=100))
    host = (await inspect(handle))["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (
        500_000_000, 256 << 20, 256 << 20, 100)
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["NetworkMode"] == "none" and not host["Privileged"]


@pytest.mark.parametrize("spec", [
    {"resources": Resources(cpus=0)},
    {"resources": Resources(cpus=512)},
    {"resources": Resources(memory_mb=4)},
    {"resources": Resources(memory_mb=10**9)},
    {"resources": Resources(pids=2)},
    {"network": "host"},
    {"workdir": "relative/dir"},
], ids=["cpus-zero", "cpus-too-many", "memory-tiny", "memory-huge", "pids-tiny", "network-host", "workdir-relative"])
async def test_invalid_spec_is_rejected_before_a_container_exists(backend, worker_id, spec):
    with pytest.raises(BackendError) as info:
        await backend.create("s1", SessionSpec(**spec))
    assert info.value.code == codes.INVALID_SPEC
    assert await backend.list() == [] and await backend._containers() == []


async def test_workdir_the_sandbox_user_cannot_create_is_invalid_spec(backend):
    with pytest.raises(BackendError) as info:
        await backend.create("s1", SessionSpec(workdir="/root/nope"))
    assert info.value.code == codes.INVALID_SPEC


async def test_claim_applies_env_and_workdir(sandbox):
    out = await run(await sandbox(env={"WHO": "docker"}, workdir="/workspace/sub"), "echo $WHO; pwd")
    assert out.content == "docker\n/workspace/sub\n"


async def test_workspace_files_keep_the_sandbox_uid_on_the_host(backend, sandbox, tmp_path):
    handle = await sandbox()
    await run(handle, "echo data > made.txt")
    made = tmp_path / "data" / "docker" / handle.worker_id / handle.sandbox_id / "workspace" / "made.txt"
    assert made.read_text() == "data\n" and (made.stat().st_uid, made.stat().st_gid) == (1000, 1000)


async def test_readonly_rootfs_keeps_workspace_and_tmp_writable(make_backend):
    backend = make_backend(readonly_rootfs=True)
    handle = await backend.create("s1", SessionSpec())
    out = await run(handle, "touch /workspace/a && touch /tmp/b && echo ok; touch /opt/c 2>&1")
    assert out.content.startswith("ok\n") and "Read-only file system" in out.content
    assert (await inspect(handle))["HostConfig"]["ReadonlyRootfs"] is True


async def test_output_flood_is_capped(sandbox):
    out = await run(await sandbox(), "seq 1 2000000")
    assert out.exit_code == 0 and len(out.content) < 100_000
    assert out.content.startswith("1\n2\n") and out.content.rstrip().endswith("2000000")


async def test_killed_container_is_noticed_by_alive(backend, sandbox):
    handle = await sandbox()
    async with aiodocker.Docker() as docker:
        await docker.containers.container(handle.container_id).kill(signal="SIGKILL")
    reason = await backend.alive(handle)
    assert reason is not None and "exit code 137" in reason


async def test_container_removed_behind_the_backends_back_is_noticed(backend, sandbox):
    handle = await sandbox()
    assert await backend.alive(handle) is None
    async with aiodocker.Docker() as docker:
        await docker.containers.container(handle.container_id).delete(force=True)
    assert await backend.alive(handle) == "container removed"
    await backend.destroy(handle)  # still idempotent


async def test_destroy_removes_container_and_dirs(backend, sandbox):
    handle = await sandbox()
    sandbox_dir = backend._root / handle.sandbox_id
    assert sandbox_dir.exists() and Path(handle.socket_path).exists()
    await backend.destroy(handle)
    await backend.destroy(handle)
    assert await backend.alive(handle) == "container removed"
    assert not sandbox_dir.exists() and not Path(handle.socket_path).parent.exists()


@pytest.mark.slow
async def test_out_of_memory_kill_is_named_by_alive(sandbox, backend):
    handle = await sandbox(resources=Resources(memory_mb=96))
    hog = "python3 -c \"b = []\nwhile True: b.append(bytearray(8 << 20))\""
    out = await run(handle, hog)
    assert out.exit_code == 137  # the hog is the OOM killer's choice; the sandbox lives on
    assert await backend.alive(handle) is None
    # Make the executor the preferred victim (raising one's own oom_score_adj needs no privilege).
    client = client_for(handle)
    try:
        dead = [o async for o in client.execute(CmdRun(
            id=new_id(), command=f"echo 1000 > /proc/$PPID/oom_score_adj; echo 1000 > /proc/1/oom_score_adj; {hog}"))]
    except ExecutorUnavailable:
        dead = []
    finally:
        await client.aclose()
    assert not dead or not isinstance(dead[-1], CmdOutput) or dead[-1].exit_code != 0
    reason = await _until_dead(backend, handle)
    assert "OOMKilled" in reason


async def _until_dead(backend, handle, timeout_s: float = 20) -> str:
    async with aiodocker.Docker() as docker:
        await asyncio.wait_for(docker.containers.container(handle.container_id).wait(), timeout_s)
    reason = await backend.alive(handle)
    assert reason is not None
    return reason


@pytest.mark.slow
async def test_fork_bomb_is_contained_and_the_executor_stays_responsive(sandbox, backend):
    handle = await sandbox(resources=Resources(pids=64))
    out = await run(handle, ":(){ :|:& };:", shell="bomb", soft_timeout_s=2, timeout_s=600)
    assert out.status in ("running", "completed")
    assert (await inspect(handle))["HostConfig"]["PidsLimit"] == 64
    client = client_for(handle)
    try:
        for _ in range(3):
            assert (await asyncio.wait_for(client.health(), 5)).ok
    finally:
        await client.aclose()
    top = await _top(handle)
    assert 10 < len(top) <= 64


async def _top(handle) -> list:
    async with aiodocker.Docker() as docker:
        return (await docker.containers.container(handle.container_id).top())["Processes"]


async def test_pause_freezes_the_sandbox_until_resume(backend, sandbox):
    handle = await sandbox()
    await backend.pause(handle)
    assert (await inspect(handle))["State"]["Paused"] is True
    assert await backend.alive(handle) is None
    action = asyncio.create_task(run(handle, "echo thawed"))
    done, _ = await asyncio.wait({action}, timeout=1.0)
    assert not done  # frozen: the executor cannot answer
    await backend.resume(handle)
    assert (await asyncio.wait_for(action, 10)).content == "thawed\n"
    assert (await inspect(handle))["State"]["Paused"] is False


async def test_pause_of_a_removed_sandbox_is_sandbox_died(backend, sandbox):
    handle = await sandbox()
    await backend.destroy(handle)
    with pytest.raises(BackendError) as info:
        await backend.pause(handle)
    assert info.value.code == codes.SANDBOX_DIED


async def test_warm_claim_is_faster_than_a_cold_start(backend):
    started = time.perf_counter()
    cold = await backend.create("s-cold", SessionSpec())
    cold_s = time.perf_counter() - started
    warm = await backend.prestart(SessionSpec())
    started = time.perf_counter()
    claimed = await backend.claim(warm, "s-warm", SessionSpec(env={"A": "1"}))
    warm_s = time.perf_counter() - started
    assert warm_s < cold_s
    assert (await run(claimed, "echo $A")).content == "1\n" and (await run(cold, "true")).exit_code == 0


def test_pool_key_separates_image_resources_and_network(backend):
    key = backend.pool_key
    assert key(SessionSpec()) == key(SessionSpec(env={"X": "1"}, workdir="/workspace/x", timeout_s=5))
    assert key(SessionSpec()) == key(SessionSpec(resources=Resources(cpus=1.0)))  # the default, spelled out
    others = [SessionSpec(image="other:1"), SessionSpec(resources=Resources(memory_mb=512)),
              SessionSpec(resources=Resources(pids=100)), SessionSpec(network="egress")]
    assert len({key(SessionSpec()), *(key(s) for s in others)}) == 5
    assert key(SessionSpec(network="host")) is None


async def test_labels_and_names_identify_the_sandbox(sandbox, worker_id):
    handle = await sandbox()
    info = await inspect(handle)
    assert info["Name"] == f"/corral-{handle.sandbox_id}"
    labels = info["Config"]["Labels"]
    assert (labels["corral.sandbox"], labels["corral.session"], labels["corral.worker"]) == (
        handle.sandbox_id, handle.session_id, worker_id)
    assert labels["corral.version"]


async def test_list_finds_sandboxes_from_a_fresh_backend(make_backend):
    first = make_backend()
    a = await first.create("s-a", SessionSpec())
    b = await first.create("s-b", SessionSpec())
    await first.aclose()
    fresh = make_backend()
    found = {h.session_id: h for h in await fresh.list()}
    assert set(found) == {"s-a", "s-b"} and found["s-a"].key == a.key
    assert (await run(found["s-b"], "echo back")).content == "back\n"
    assert found["s-b"].container_id == b.container_id


async def test_sweep_removes_orphans_of_unknown_sessions(make_backend):
    first = make_backend()
    keep = await first.create("s-keep", SessionSpec())
    orphan = await first.create("s-gone", SessionSpec())
    unclaimed = await first.prestart(SessionSpec())
    await first.aclose()
    fresh = make_backend()
    removed = await fresh.sweep({"s-keep"})
    assert set(removed) == {orphan.sandbox_id, unclaimed.sandbox_id}
    assert await fresh.alive(orphan) == "container removed" and await fresh.alive(keep) is None
    assert [h.session_id for h in await fresh.list()] == ["s-keep"]


async def test_sweep_spares_this_backends_own_warm_sandboxes(backend):
    warm = await backend.prestart(SessionSpec())
    assert await backend.sweep(set()) == []
    assert await backend.alive(warm) is None


async def test_default_image_comes_from_the_image_builder(make_backend, runtime_image):
    pytest.importorskip("images", reason="the image builder is not available")
    backend = make_backend(image=None)
    handle = await backend.create("s1", SessionSpec())
    assert (await inspect(handle))["Config"]["Image"] == runtime_image
    assert (await run(handle, "echo default")).content == "default\n"


async def test_missing_image_names_the_build_command(make_backend):
    backend = make_backend(image="corral-runtime:does-not-exist")
    with pytest.raises(ImageNotFound, match="corral image build"):
        await backend.create("s1", SessionSpec())
    assert await backend._containers() == []


async def test_unreachable_engine_is_a_clear_backend_error(make_backend, tmp_path):
    backend = make_backend(docker_url=f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(BackendError, match="dockerd.*DOCKER_HOST"):
        await backend.create("s1", SessionSpec())


async def test_executor_that_exits_early_is_reported_with_its_output(make_backend):
    backend = make_backend(executor_cmd=("sh", "-c", "echo broken executor >&2; exit 3"))
    with pytest.raises(BackendError, match="exited before.*exit code 3.*broken executor"):
        await backend.create("s1", SessionSpec())
    assert await backend._containers() == []


async def test_start_past_the_deadline_is_cleaned_up_retried_once_then_reported(make_backend, caplog):
    backend = make_backend(executor_cmd=("sleep", "60"), start_timeout_s=1.0)
    with pytest.raises(BackendError, match="did not start within 1.0 s"):
        await backend.create("s1", SessionSpec())
    assert await backend._containers() == []


async def test_tcp_transport_with_egress_publishes_an_allocated_port(make_backend, tmp_path):
    backend = make_backend(transport="tcp", port_lock_dir=str(tmp_path / "ports"))
    handle = await backend.create("s1", SessionSpec(network="egress"))
    assert handle.socket_path is None and 30000 <= handle.port <= 39999 and handle.host == "127.0.0.1"
    assert (tmp_path / "ports" / f"{handle.port}.lock").exists()
    assert (await run(handle, "echo tcp")).content == "tcp\n"
    await backend.destroy(handle)
    assert handle.port not in backend._ports.held()


async def test_tcp_transport_without_egress_uses_the_internal_network(make_backend):
    backend = make_backend(transport="tcp")
    handle = await backend.create("s1", SessionSpec())
    assert handle.host != "127.0.0.1"
    assert (await run(handle, "echo internal")).content == "internal\n"
    probe = "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\""
    assert (await run(handle, probe)).exit_code != 0


async def test_an_allowed_mount_is_read_only_in_the_container(make_backend, tmp_path):
    shared = tmp_path / "mirrors"
    shared.mkdir()
    (shared / "repo.txt").write_text("mirror\n")
    backend = make_backend()
    backend.allowed_mounts = (str(tmp_path),)
    spec = SessionSpec(mounts=[Mount(source=str(shared), target="/mirrors")])
    backend.validate(spec)
    handle = await backend.create("s-mount", spec)
    out = await run(handle, "cat /mirrors/repo.txt; touch /mirrors/x 2>&1 | grep -c Read-only")
    assert out.content == "mirror\n1\n"


async def test_a_mount_outside_the_allowed_roots_is_refused(make_backend):
    backend = make_backend()
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(mounts=[Mount(source="/etc", target="/hostetc")]))
    assert info.value.code == "invalid_spec"
