"""The backend contract: what every backend must do, run against every backend we ship.

A new backend is done when it passes this file (add it to ``BACKENDS`` below). Real sandboxes:
local processes, bubblewrap namespaces, Docker containers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

import pytest

from protocol import CmdOutput, CmdRun, SessionSpec, new_id
from workers.backends import Backend, BackendError

from .test_docker import ENGINE, runtime_image  # noqa: F401  (fixture)
from .test_kubernetes import KUBECONFIG, NO_CLUSTER, k8s_image, namespace  # noqa: F401  (fixtures)

BACKENDS = [
    "local",
    pytest.param("bubblewrap", marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")),
    pytest.param("docker", marks=pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")),
    pytest.param("kubernetes", marks=[pytest.mark.kubernetes,
                                      pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")]),
]


@pytest.fixture(params=BACKENDS)
def kind(request):
    return request.param


@pytest.fixture
def image(kind, request):
    if kind == "kubernetes":
        return request.getfixturevalue("k8s_image")
    return request.getfixturevalue("runtime_image") if kind == "docker" else None


def _config(kind, image, request):
    """The backend's config for the contract: its name alone, or the image (and cluster) it needs."""
    from workers.backends.docker import DockerConfig

    if kind == "kubernetes":
        from workers.backends.kubernetes import KubernetesConfig

        return KubernetesConfig(kubeconfig=KUBECONFIG, namespace=request.getfixturevalue("namespace"), image=image,
                                cpus=0.1, memory_mb=256, grace_period_s=1)
    return DockerConfig(image=image) if image else kind


@pytest.fixture
async def make(kind, tmp_path, image, request):
    """Backends of one kind sharing a base dir and worker id, as a worker and its restart would."""
    from workers.backends import make_backend

    made: list[Backend] = []
    worker_id = "wc-" + new_id()[:8]
    config = _config(kind, image, request)

    def build() -> Backend:
        backend = make_backend(config, base_dir=str(tmp_path / "data"), worker_id=worker_id)
        made.append(backend)
        return backend

    yield build
    cleanup = build()
    for handle in await cleanup.inventory():
        await cleanup.destroy(handle)
    for backend in made:
        await backend.aclose()


@pytest.fixture
def backend(make):
    return make()


async def run(backend: Backend, handle, command: str, **fields) -> CmdOutput:
    client = backend.client(handle)
    try:
        observations = [o async for o in client.execute(CmdRun(id=new_id(), command=command, **fields))]
    finally:
        await client.aclose()
    assert isinstance(observations[-1], CmdOutput), observations[-1]
    return observations[-1]


async def _kill(backend: Backend, kind: str, handle) -> None:
    if kind == "kubernetes":  # the pod deleted at once: its handle file stays, as a killed container's does
        core = await backend.core()
        await core.delete_namespaced_pod(handle.container_id, backend.namespace, grace_period_seconds=0)
    elif kind == "docker":
        import subprocess

        subprocess.run(["docker", "kill", handle.container_id], check=True, capture_output=True)  # test only
    else:
        os.killpg(handle.pid, signal.SIGKILL) if kind == "local" else os.kill(handle.pid, signal.SIGKILL)


async def test_a_prestarted_sandbox_answers_unclaimed(backend):
    handle = await backend.prestart(SessionSpec())
    health = await backend.client(handle).health()
    assert health.ok and health.session_id == ""
    assert await backend.alive(handle) is None


async def test_a_claim_binds_the_session_its_env_and_workdir(backend):
    handle = await backend.create("s-contract", SessionSpec(env={"WHO": "contract"}))
    assert handle.session_id == "s-contract"
    out = await run(backend, handle, "echo $WHO; pwd")
    assert out.content.split()[0] == "contract" and out.exit_code == 0
    assert (await backend.client(handle).health()).session_id == "s-contract"


async def test_a_restarted_worker_finds_and_drives_its_sandboxes(backend, make):
    handle = await backend.create("s-adopt", SessionSpec())
    fresh = make()
    found = {h.sandbox_id: h for h in await fresh.list()}
    assert handle.sandbox_id in found and found[handle.sandbox_id].session_id == "s-adopt"
    assert (await run(fresh, found[handle.sandbox_id], "echo adopted")).content == "adopted\n"


async def test_destroy_removes_the_sandbox_and_every_trace(backend):
    handle = await backend.create("s-gone", SessionSpec())
    await backend.destroy(handle)
    assert await backend.alive(handle) is not None
    assert handle.sandbox_id not in {h.sandbox_id for h in await backend.inventory()}
    await backend.destroy(handle)  # idempotent


async def test_a_dead_sandbox_says_why_and_stays_in_the_inventory_for_the_sweeper(backend, kind):
    handle = await backend.create("s-dead", SessionSpec())
    await _kill(backend, kind, handle)
    for _ in range(100):
        if await backend.alive(handle) is not None:
            break
        await asyncio.sleep(0.05)
    assert await backend.alive(handle)
    assert handle.sandbox_id not in {h.sandbox_id for h in await backend.list()}
    assert handle.sandbox_id in {h.sandbox_id for h in await backend.inventory()}


async def test_pause_freezes_every_process_until_resume_where_supported(backend):
    handle = await backend.create("s-pause", SessionSpec())
    try:
        await backend.pause(handle)
    except BackendError as exc:
        assert exc.code == "unsupported", exc  # the contract: say so, with the stable code
        return
    frozen = asyncio.create_task(run(backend, handle, "echo thawed"))
    done, _ = await asyncio.wait({frozen}, timeout=1.0)
    assert not done, "an action finished inside a paused sandbox"
    await backend.resume(handle)
    assert (await asyncio.wait_for(frozen, 20)).content == "thawed\n"


async def test_a_spec_the_backend_cannot_serve_is_invalid_spec(backend):
    for spec in (SessionSpec(isolation="kata-please"), SessionSpec(keep=True) if not backend.can_keep else None):
        if spec is None:
            continue
        with pytest.raises(BackendError) as info:
            backend.validate(spec)
        assert info.value.code == "invalid_spec"
