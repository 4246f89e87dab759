"""The cluster manifests (compose/kubernetes/deploy/): every object the API server of the test
cluster accepts in a server-side dry run (schema, RBAC and field validation by Kubernetes itself),
hardened pods, the least RBAC the kubernetes backend needs, and a KEDA ScaledObject aimed at it."""

from __future__ import annotations

from pathlib import Path

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
    assert trigger["metadata"]["stream"] == "CORRAL"


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
