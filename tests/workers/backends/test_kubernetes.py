"""The kubernetes backend against the real single-node test cluster (``./dev k8s up``).

Skipped when the cluster's kubeconfig is missing or its API server does not answer. Each module
gets its own namespace (``corral-test-…``), deleted afterwards; the runtime image is built from
this tree and imported into the cluster's containerd once per session (``./dev k8s import``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path
import subprocess
import sys

import pytest

from workers.backends.contract import run

from protocol import Placement, Resources, SessionSpec, new_id
from workers.backends import BackendError

KUBECONFIG = os.environ.get("CORRAL_TEST_KUBECONFIG", "/var/lib/corral-k8s/admin.kubeconfig")
ROOT = Path(__file__).resolve().parents[3]


def _cluster_answers() -> str | None:
    """None when the test cluster answers, else why not."""
    if not os.path.exists(KUBECONFIG):
        return f"no test cluster kubeconfig at {KUBECONFIG} (./dev k8s up, or CORRAL_TEST_KUBECONFIG)"
    try:
        import kubernetes_asyncio  # noqa: F401  (installed?)
    except ImportError:
        return "kubernetes_asyncio is not installed (the kubernetes extra)"

    async def ping() -> None:
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        await config.load_kube_config(KUBECONFIG, client_configuration=configuration, persist_config=False)
        async with client.ApiClient(configuration) as api:
            await asyncio.wait_for(client.VersionApi(api).get_code(), 5)
    try:
        asyncio.run(ping())
    except Exception as exc:  # any failure to reach it means: skip
        return f"the test cluster's API server does not answer ({exc})"
    return None


NO_CLUSTER = _cluster_answers()
skip_without_cluster = pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")
pytestmark = [pytest.mark.kubernetes, skip_without_cluster]


def build_and_import_image() -> str:
    """The runtime image of this tree, in the cluster's containerd."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tag = subprocess.run([sys.executable, "-m", "cli.main", "image", "build", "--quiet"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    subprocess.run([str(ROOT / "dev"), "k8s", "import", tag], cwd=ROOT, check=True, capture_output=True)
    return tag


@pytest.fixture(scope="session")
def k8s_image() -> str:
    return build_and_import_image()


async def _namespace(name: str, create: bool) -> None:
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration, persist_config=False)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        if create:
            await core.create_namespace({"metadata": {"name": name}})
        else:
            await core.delete_namespace(name, grace_period_seconds=0)


def _run_aside(coro) -> None:
    """Run a coroutine on its own loop in a thread (the fixture may be asked for from inside a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def namespace() -> str:
    name = "corral-test-" + new_id()[:8]
    _run_aside(_namespace(name, True))
    yield name
    _run_aside(_namespace(name, False))


@pytest.fixture
async def make(namespace, k8s_image, tmp_path):
    """Backends sharing a base dir and worker id, as a worker and its restart would."""
    from workers.backends.kubernetes import KubernetesConfig
    from workers.backends.kubernetes import KubernetesBackend

    made = []
    worker_id = "wk-" + new_id()[:8]

    def build(**overrides):
        config = KubernetesConfig(kubeconfig=KUBECONFIG, namespace=namespace, image=k8s_image, grace_period_s=1,
                                  cpus=0.1, memory_mb=256,
                                  **overrides)
        backend = KubernetesBackend(base_dir=str(tmp_path / "data"), worker_id=worker_id, config=config)
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




async def _objects(backend) -> dict[str, list[str]]:
    """Names of this worker's pods (not being deleted), Secrets and claims, by label."""
    core = await backend.core()
    sel = backend._selector()
    pods = await core.list_namespaced_pod(backend.namespace, label_selector=sel)
    secrets = await core.list_namespaced_secret(backend.namespace, label_selector=sel)
    claims = await core.list_namespaced_persistent_volume_claim(backend.namespace, label_selector=sel)
    return {"pods": [p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None],
            "secrets": [s.metadata.name for s in secrets.items if s.metadata.deletion_timestamp is None],
            "claims": [c.metadata.name for c in claims.items if c.metadata.deletion_timestamp is None]}


async def test_a_pod_starts_and_runs_a_command_as_the_sandbox_user(backend):
    handle = await backend.create("s-k8s", SessionSpec())
    out = await run(backend, handle, "id -u; pwd")
    assert out.exit_code == 0 and out.content.split() == ["1000", "/workspace"]
    assert await backend.alive(handle) is None


async def test_the_pod_has_no_capabilities_no_new_privileges_and_its_memory_limit(backend):
    handle = await backend.create("s-sec", SessionSpec(resources=Resources(memory_mb=300, cpus=0.2)))
    status = (await run(backend, handle, "cat /proc/self/status")).content
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["CapEff"].strip(), 16) == 0 and int(fields["CapPrm"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    limit = (await run(backend, handle, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                                        "|| cat /sys/fs/cgroup/memory.max")).content.strip()
    assert int(limit) == 300 * 1024 * 1024


async def test_the_executor_key_is_not_in_the_pod_spec(backend):
    handle = await backend.create("s-key", SessionSpec())
    core = await backend.core()
    pod = await core.read_namespaced_pod(handle.container_id, backend.namespace)
    assert handle.key not in str(pod.to_dict())


async def test_a_missing_image_is_image_not_found_naming_it(backend):
    with pytest.raises(BackendError) as info:
        await backend.create("s-noimg", SessionSpec(image="corral-no-such-image:0"))
    assert info.value.code == "image_not_found"
    assert "corral-no-such-image:0" in str(info.value) and "./dev k8s import" in str(info.value)
    assert await _objects(backend) == {"pods": [], "secrets": [], "claims": []}


async def test_an_unschedulable_pod_is_no_capacity_with_the_schedulers_message(backend):
    spec = SessionSpec(placement=Placement(node_selector={"corral.test/nowhere": "true"}))
    with pytest.raises(BackendError) as info:
        await backend.create("s-nocap", spec)
    assert info.value.code == "no_capacity"
    assert "0/1 nodes are available" in str(info.value)  # the scheduler's own words


async def test_a_persistent_workspace_survives_its_pod(backend):
    spec = SessionSpec(persistent=True)
    handle = await backend.create("s-pvc", spec)
    await run(backend, handle, "echo kept > /workspace/note")
    core = await backend.core()
    await core.delete_namespaced_pod(handle.container_id, backend.namespace, grace_period_seconds=0)
    for _ in range(100):
        if await backend.alive(handle) is not None:
            break
        await asyncio.sleep(0.05)
    assert await backend.alive(handle) == "pod deleted"
    again = await backend.recreate(handle, spec)
    assert (await run(backend, again, "cat /workspace/note")).content == "kept\n"
    await backend.destroy(again)


async def test_a_fresh_backend_adopts_and_drives_the_pod(backend, make):
    handle = await backend.create("s-adopt", SessionSpec())
    fresh = make()
    found = {h.sandbox_id: h for h in await fresh.list()}
    assert found[handle.sandbox_id].session_id == "s-adopt"
    assert (await run(fresh, found[handle.sandbox_id], "echo adopted")).content == "adopted\n"


async def test_a_pod_whose_handle_file_is_gone_is_adopted_with_its_key_from_the_secret(backend, make, tmp_path):
    handle = await backend.create("s-nofile", SessionSpec())
    (backend.sandbox_dir(handle) / "sandbox.json").unlink()
    found = {h.sandbox_id: h for h in await make().list()}
    assert found[handle.sandbox_id].key == handle.key and found[handle.sandbox_id].session_id == "s-nofile"


async def test_sweep_removes_orphans_and_spares_known_sessions(backend, make):
    known = await backend.create("s-known", SessionSpec())
    orphan = await backend.create("s-orphan", SessionSpec(persistent=True))
    removed = await make().sweep({"s-known"})
    assert removed == [orphan.sandbox_id]
    objects = await _objects(backend)
    assert objects["pods"] == [known.container_id] and not objects["claims"]


async def test_destroy_leaves_no_pod_secret_or_claim(backend):
    handle = await backend.create("s-gone", SessionSpec(persistent=True))
    await backend.destroy(handle)
    assert await _objects(backend) == {"pods": [], "secrets": [], "claims": []}
    assert await backend.alive(handle) == "pod deleted"
    await backend.destroy(handle)  # idempotent


async def test_an_unbound_claim_past_the_deadline_names_the_claim_and_its_storage_class(make):
    backend = make(storage_class="corral-no-such-class", start_timeout_s=3)
    with pytest.raises(BackendError) as info:
        await backend.create("s-unbound", SessionSpec(persistent=True))
    assert "workspace claim" in str(info.value) and "corral-no-such-class" in str(info.value)
    assert await _objects(backend) == {"pods": [], "secrets": [], "claims": []}



async def test_a_session_through_nats_runs_on_a_warm_pod(nats_server, make):
    from actors.controller import Controller, ControllerConfig
    from protocol import Client
    from workers.worker import Worker, WorkerConfig

    backend = make()
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id=backend._worker_id, backend=backend.config,
                                 base_dir=str(backend._root.parent.parent), warm_pool=1), backend=backend)
    await worker.start()
    try:
        async with asyncio.timeout(60):
            while not worker.info().warm:
                await asyncio.sleep(0.05)
        async with await Client.connect(nats_server.url) as client:
            async with await client.create_session(env={"WHO": "pod"}) as session:
                assert session.info.warm and session.info.backend == "kubernetes"
                out = await session.cmd("echo $WHO; id -u; pwd")
                assert out.content == "pod\n1000\n/workspace\n"
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_a_persistent_sessions_deleted_pod_is_recreated_by_its_worker_on_the_same_workspace(nats_server, make):
    from actors.controller import Controller, ControllerConfig
    from protocol import Client, CmdOutput, CmdRun, Error, decode_reply
    from workers.worker import Worker, WorkerConfig

    backend = make()
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id=backend._worker_id, backend=backend.config,
                                 base_dir=str(backend._root.parent.parent), warm_pool=0, watch_interval_s=0.5),
                    backend=backend)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            async with await client.create_session(persistent=True) as session:
                statuses: list[tuple[str, str | None]] = []
                recovered = asyncio.Event()

                async def on_status(msg):
                    info = decode_reply(msg.data)
                    statuses.append((info.status, info.reason))
                    if info.status == "recovered":
                        recovered.set()
                await client.nats.subscribe(client.subjects.status(session.session_id), cb=on_status)
                assert (await session.cmd("echo kept > /workspace/note; echo $$ > /tmp/pid")).exit_code == 0
                handle = worker._runners[session.session_id].handle
                running = asyncio.create_task(session.run(CmdRun(id=new_id(), command="sleep 30")))
                await asyncio.sleep(1)
                core = await backend.core()
                await core.delete_namespaced_pod(handle.container_id, backend.namespace, grace_period_seconds=0)
                died = await asyncio.wait_for(running, 60)
                # The executor may answer first as its pod stops (the shell closed), else the worker does.
                assert (isinstance(died, Error) and died.code == "sandbox_died"
                        or isinstance(died, CmdOutput) and died.status == "failed"), died
                # (An action sent now may still start on the dying pod and be answered sandbox_died
                # there: actions running when the pod goes are never run twice.)
                await asyncio.wait_for(recovered.wait(), 120)
                out = await asyncio.wait_for(session.cmd("cat /workspace/note; test -e /tmp/pid || echo fresh-pod"), 60)
                assert isinstance(out, CmdOutput) and out.content == "kept\nfresh-pod\n", out
                assert [s for s, _ in statuses][:2] == ["starting", "recovered"], statuses
                assert "re-creating it on its workspace" in (statuses[0][1] or "")
                info = await client.get_session(session.session_id)
                assert info.status == "ready"
    finally:
        await worker.aclose()
        await ctl.aclose()


async def test_a_port_forward_the_kubelet_cannot_connect_says_why(backend):
    from executor.client import ExecutorUnavailable

    handle = await backend.create("s-pf-error", SessionSpec())
    await backend.core()
    reader, writer = await backend._forwarder.open(handle.container_id, backend.namespace, 9)  # nothing listens
    writer.write(b"GET /v1/health HTTP/1.1\r\n\r\n")
    await writer.drain()
    with pytest.raises(ExecutorUnavailable) as excinfo:
        await asyncio.wait_for(reader.read(1), 30)
    assert f"{backend.namespace}/{handle.container_id}:9" in str(excinfo.value)
    assert "forwarding port 9" in str(excinfo.value), excinfo.value  # the kubelet's own text
    writer.close()
