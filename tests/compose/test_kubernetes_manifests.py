"""The cluster manifests (compose/kubernetes/deploy/): every object the API server of the test
cluster accepts in a server-side dry run (schema, RBAC and field validation by Kubernetes itself),
hardened pods, the least RBAC the kubernetes backend needs, a KEDA ScaledObject aimed at it — and
the manifests applied for real (with the test cluster's host-network overlay) running a session
from the host through NATS, the controller and a worker pod to a sandbox pod
(docs/kubernetes-deploy.md)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import socket
import subprocess
import sys

import pytest
import yaml

from ..workers.backends.test_kubernetes import KUBECONFIG, NO_CLUSTER

DEPLOY = Path(__file__).resolve().parents[2] / "compose" / "kubernetes" / "deploy"


def _objects(pattern: str = "[0-9]*.yaml") -> list[dict]:
    return [doc for path in sorted(DEPLOY.glob(pattern)) for doc in yaml.safe_load_all(path.read_text()) if doc]


def _pod_specs() -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in _objects() if o["kind"] in ("Deployment", "StatefulSet")]


def test_every_corral_pod_is_non_root_with_no_privilege_escalation_and_no_capabilities():
    specs = _pod_specs()
    assert len(specs) == 4  # nats, controller, workers, audit
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_only_the_workers_get_an_api_token_and_their_role_is_what_the_backend_uses():
    specs = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in _objects() if o["kind"] in ("Deployment", "StatefulSet")}
    assert specs["corral-worker"]["serviceAccountName"] == "corral-worker"
    assert all(spec.get("automountServiceAccountToken") is False for name, spec in specs.items() if name != "corral-worker")
    role = next(o for o in _objects() if o["kind"] == "Role")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("pods", "create"), ("pods", "watch"), ("pods/portforward", "create"), ("pods/log", "get"),
            ("secrets", "create"), ("persistentvolumeclaims", "delete")} <= granted
    assert not any(r in ("pods/exec", "nodes", "*") or v == "*" for r, v in granted)
    assert role["metadata"]["namespace"] == "corral-sandboxes"  # nothing cluster-wide


def test_the_keda_scaled_object_scales_the_worker_deployment_on_jetstream_lag():
    (scaled,) = _objects("keda-scaledobject.yaml")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    workers = next(o for o in _objects() if o["kind"] == "Deployment" and o["metadata"]["name"] == "corral-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == workers["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == workers["metadata"]["namespace"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} <= set(trigger["metadata"])
    from actors.controller._backlog import BACKLOG_CONSUMER, BACKLOG_STREAM

    # What the controller maintains: one pending message per create waiting for a worker.
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (BACKLOG_STREAM, BACKLOG_CONSUMER)


@pytest.mark.kubernetes
@pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")
async def test_the_api_server_accepts_every_manifest_in_a_dry_run():
    from kubernetes_asyncio import client, config, utils

    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration, persist_config=False)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        namespaces = [o for o in _objects() if o["kind"] == "Namespace"]
        created = []
        try:
            for ns in namespaces:  # namespaced objects are dry-run into namespaces that exist
                if ns["metadata"]["name"] not in {n.metadata.name for n in (await core.list_namespace()).items}:
                    await core.create_namespace(ns)
                    created.append(ns["metadata"]["name"])
            for obj in _objects():
                if obj["kind"] != "Namespace":
                    await utils.create_from_dict(api, obj, dry_run="All")
        finally:
            for name in created:
                await core.delete_namespace(name, grace_period_seconds=0)


# ------------------------------------------------------------------ applied for real, a session through them
#
# The test cluster has no DNS and no kube-proxy (Services do not route, nothing reaches pod IPs), so
# the manifests are applied with an overlay, made here in Python: every corral pod on the host's
# network, NATS on free loopback ports, everyone told where NATS and the API server are on loopback,
# namespaces of the test's own, and what the host-path provisioner needs. Everything else — images,
# commands, security contexts, the ServiceAccount, the Role and its binding — is the manifests'.

ROOT = DEPLOY.parents[2]
API_PORT = "16443"   # the test cluster's API server on 127.0.0.1 (its certificate names that IP)


class Overlay:
    """How the test cluster differs from a real one, applied to the manifests' objects."""

    def __init__(self, suffix: str, nats_port: int, monitor_port: int, sandbox_image: str) -> None:
        self.namespace = f"corral-e2e-{suffix}"
        self.sandboxes = f"corral-e2e-{suffix}-sandboxes"
        self.nats_port, self.monitor_port, self.sandbox_image = nats_port, monitor_port, sandbox_image
        self.nats_url = f"nats://127.0.0.1:{nats_port}"

    def rename(self, name: str) -> str:
        return {"corral": self.namespace, "corral-sandboxes": self.sandboxes}.get(name, name)

    def apply(self, objects: list[dict]) -> list[dict]:
        out = []
        for obj in objects:
            obj = yaml.safe_load(yaml.safe_dump(obj))  # a deep copy
            meta = obj["metadata"]
            if obj["kind"] == "Namespace":
                meta["name"] = self.rename(meta["name"])
            else:
                meta["namespace"] = self.rename(meta["namespace"])
            for subject in obj.get("subjects", []):
                subject["namespace"] = self.rename(subject["namespace"])
            if obj["kind"] in ("Deployment", "StatefulSet"):
                self._pod(obj["metadata"]["name"], obj["spec"])
            out.append(obj)
        return out

    def _pod(self, name: str, spec: dict) -> None:
        pod = spec["template"]["spec"]
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "Default"   # no cluster DNS to point at
        (container,) = pod["containers"]
        container.pop("ports", None)   # on the host's network a containerPort is a hostPort: ports are chosen below
        env = [e for e in container.get("env", []) if e["name"] not in ("CORRAL_NATS_URL", "SANDBOX_IMAGE")]
        env.append({"name": "CORRAL_NATS_URL", "value": self.nats_url})
        if name == "nats":
            container["args"] = ["-js", "-sd", "/data", "-a", "127.0.0.1", "-p", str(self.nats_port),
                                 "--http_port", str(self.monitor_port)]
            container["readinessProbe"]["httpGet"].update(host="127.0.0.1", port=self.monitor_port)
            self._chown_claim(pod, "data", "/data")
        elif name == "corral-controller":
            spec["replicas"] = 1
        elif name == "corral-worker":
            spec["replicas"] = 1
            command = container["command"]
            command[command.index("--namespace") + 1] = self.sandboxes
            command[command.index("--warm-pool") + 1] = "0"   # two cores: a warm pod would hold a CPU
            env.append({"name": "SANDBOX_IMAGE", "value": self.sandbox_image})
            # In-cluster config reads KUBERNETES_SERVICE_HOST/PORT; the Service's ClusterIP does not route here.
            env += [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": API_PORT}]
        elif name == "corral-audit":
            command = container["command"]
            command[command.index("--nats") + 1] = self.nats_url
            self._chown_claim(pod, "log", "/var/lib/corral-audit")
        container["env"] = env

    @staticmethod
    def _chown_claim(pod: dict, volume: str, path: str) -> None:
        """The host-path provisioner makes root-owned 0750 directories and ignores fsGroup: hand the
        volume to the pod's user first (root with CAP_CHOWN only, for one chown)."""
        user = pod["securityContext"]["runAsUser"]
        image = pod["containers"][0]["image"]
        pod["initContainers"] = [{
            "name": "chown", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["chown", f"{user}:{pod['securityContext'].get('runAsGroup', user)}", path],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}},
            "volumeMounts": [{"name": volume, "mountPath": path}],
        }]


def test_the_overlay_changes_only_what_the_test_cluster_lacks():
    overlay = Overlay("t", 14222, 18222, "corral-runtime:x")
    before, after = _objects(), overlay.apply(_objects())
    assert [o["kind"] for o in before] == [o["kind"] for o in after]
    for old, new in zip(before, after):
        if old["kind"] in ("Deployment", "StatefulSet"):
            old_pod, new_pod = old["spec"]["template"]["spec"], new["spec"]["template"]["spec"]
            old_c, new_c = old_pod["containers"][0], new_pod["containers"][0]
            assert new_c["image"] == old_c["image"] and new_c["securityContext"] == old_c["securityContext"]
            assert new_pod["securityContext"] == old_pod["securityContext"]
    role = next(o for o in after if o["kind"] == "Role")
    assert role == {**next(o for o in before if o["kind"] == "Role"), "metadata": {**role["metadata"]}}
    assert role["metadata"]["namespace"] == overlay.sandboxes
    binding = next(o for o in after if o["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == overlay.namespace


def _run(argv: list[str], **kwargs) -> str:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (f"{argv[:3]} exited {result.returncode}:\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def deploy_images() -> str:
    """corral-service:local and corral-nats:local (compose/prepare: cached by content, minutes the
    first time) and this tree's runtime image, imported into the cluster's containerd; the runtime ref."""
    _run([sys.executable, str(ROOT / "compose" / "prepare.py"), "--no-sandbox-image"], timeout=1500)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runtime = _run([sys.executable, "-m", "cli.main", "image", "build", "--quiet"], env=env,
                   timeout=900).strip().splitlines()[-1]
    _run([str(ROOT / "dev"), "k8s", "import", "corral-service:local", "corral-nats:local", runtime], timeout=600)
    return runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_ready(core, namespace: str, expected: dict[str, int], timeout_s: float) -> None:
    """Watch the namespace's pods until each app has its count of Ready pods."""
    from kubernetes_asyncio import watch

    ready: dict[str, set[str]] = {app: set() for app in expected}
    def done() -> bool:
        return all(len(ready[app]) >= n for app, n in expected.items())

    async with asyncio.timeout(timeout_s):
        while not done():
            async with watch.Watch() as w:
                async for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=30):
                    pod = event["object"]
                    app = (pod.metadata.labels or {}).get("app.kubernetes.io/name")
                    if app not in ready:
                        continue
                    ok = event["type"] != "DELETED" and any(
                        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
                    (ready[app].add if ok else ready[app].discard)(pod.metadata.name)
                    if done():
                        return


async def _why(core, namespace: str) -> str:
    """Each pod's phase, container states and last log lines: what a failed wait reports."""
    lines = []
    for pod in (await core.list_namespaced_pod(namespace)).items:
        states = [f"{s.name}: {s.state}" for s in (pod.status.container_statuses or [])]
        lines.append(f"{pod.metadata.name} {pod.status.phase} {states}")
        for container in [c.name for c in pod.spec.init_containers or []] + [c.name for c in pod.spec.containers]:
            try:
                log = await core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container,
                                                         tail_lines=15)
            except Exception as exc:  # a container that never started has no log: say so and go on
                log = f"(no log: {exc.__class__.__name__})"
            lines.append(f"--- {pod.metadata.name}/{container}\n{log}")
    return "\n".join(lines)


async def _delete_namespaces(core, names: list[str], timeout_s: float) -> None:
    """Delete the namespaces and watch until they are gone (their pods' grace periods included)."""
    from kubernetes_asyncio import watch
    from kubernetes_asyncio.client.exceptions import ApiException

    left = set()
    for name in names:
        try:
            await core.delete_namespace(name)
            left.add(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    async with asyncio.timeout(timeout_s):
        while left:
            left &= {n.metadata.name for n in (await core.list_namespace()).items}
            if not left:
                return
            async with watch.Watch() as w:
                async for event in w.stream(core.list_namespace, timeout_seconds=10):
                    if event["type"] == "DELETED":
                        left.discard(event["object"].metadata.name)
                    if not left:
                        return


@pytest.mark.kubernetes
@pytest.mark.slow
@pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")
@pytest.mark.timeout(2400)  # the image fixture: a cold compose/prepare builds the wheelhouse and two images
async def test_a_session_runs_through_the_applied_manifests(deploy_images):
    from kubernetes_asyncio import client, config, utils

    from protocol import Client, CmdOutput, CmdRun, CorralError, new_id

    overlay = Overlay(new_id()[:8].lower(), _free_port(), _free_port(), deploy_images)
    objects = overlay.apply(_objects())
    configuration = client.Configuration()
    await config.load_kube_config(KUBECONFIG, client_configuration=configuration, persist_config=False)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
        try:
            for obj in objects:  # in file order: namespaces first, NATS before its clients
                await utils.create_from_dict(api, obj)
            try:
                await _wait_ready(core, overlay.namespace, {"nats": 1, "corral-controller": 1, "corral-worker": 1,
                                                            "corral-audit": 1}, timeout_s=180)
            except TimeoutError:
                pytest.fail(f"the deployment did not become ready:\n{await _why(core, overlay.namespace)}")

            async with await Client.connect(overlay.nats_url) as corral:
                async with asyncio.timeout(60):   # the worker heartbeats once its backend reached the API server
                    while not any(w.backend == "kubernetes" for w in await _workers(corral, CorralError)):
                        await asyncio.sleep(0.5)
                session = await corral.create_session(backend="kubernetes", resources={"cpus": 0.25, "memory_mb": 256})
                try:
                    out = await session.run(CmdRun(id=new_id(), command="echo hi; id -u"), wait_s=60)
                finally:
                    await session.close()
            assert isinstance(out, CmdOutput) and out.exit_code == 0, out
            assert out.content.split() == ["hi", "1000"], out.content
            assert session.info.backend == "kubernetes"
            assert session.info.worker_id.startswith("corral-worker-")   # the worker pod's name
            sandbox_pods = (await core.list_namespaced_pod(overlay.sandboxes)).items
            assert all(p.metadata.deletion_timestamp for p in sandbox_pods), [p.metadata.name for p in sandbox_pods]
        finally:
            await _delete_namespaces(core, namespaces, timeout_s=180)
        for namespace in namespaces:
            assert not (await core.list_namespaced_pod(namespace)).items
            assert not (await core.list_namespaced_persistent_volume_claim(namespace)).items
        claims = [pv.spec.claim_ref for pv in (await core.list_persistent_volume()).items]
        assert not [c.name for c in claims if c and c.namespace in namespaces]  # reclaimed (Delete) with their claims


async def _workers(corral, CorralError) -> list:
    try:
        return await corral.workers()
    except CorralError:  # the controller is not answering yet
        return []
