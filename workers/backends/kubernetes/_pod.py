"""The manifests of one sandbox: its Pod, the Secret that carries the executor's key, its PVC.

Plain core/v1 dicts built from data (Kubernetes v1.20 serves every field used here), so what a
session gets can be read and tested without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .._docker_spec import (
    LABEL_DEPLOYMENT, LABEL_SANDBOX, LABEL_SESSION, LABEL_VERSION, LABEL_WORKER, OUTPUT_DIR, VERSION,
)
from ._config import KubernetesConfig, PodLimits

WORKSPACE = "/workspace"
EXEC_PORT = 8000
CONTAINER = "sandbox"
CONFIG_ENV = "CORRAL_EXECUTOR_CONFIG"
SECRET_KEY = "executor.json"
COMMAND = ["/usr/bin/tini", "--", "corral-executor"]
ANNOTATION_WORKER = "corral.worker-id"
"""The worker id in full (a label value is at most 63 characters of a narrow alphabet)."""

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a stable one made from it (a prefix and a hash)."""
    if _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:40].strip("-_.")
    return f"{stem}-{digest}" if stem and stem[0].isalnum() else f"h-{digest}"


def pod_name(sandbox_id: str) -> str:
    return f"corral-{sandbox_id}"


def secret_name(sandbox_id: str) -> str:
    return f"corral-{sandbox_id}-executor"


def claim_name(sandbox_id: str) -> str:
    return f"corral-{sandbox_id}-ws"


def labels(*, sandbox_id: str, session_id: str, worker_id: str, deployment: str) -> dict[str, str]:
    return {LABEL_SANDBOX: sandbox_id, LABEL_SESSION: label_value(session_id), LABEL_WORKER: label_value(worker_id),
            LABEL_DEPLOYMENT: deployment, LABEL_VERSION: label_value(VERSION)}


def selector(*, worker_id: str, deployment: str) -> str:
    """The label selector of every sandbox object of one worker of one deployment."""
    return f"{LABEL_WORKER}={label_value(worker_id)},{LABEL_DEPLOYMENT}={deployment},{LABEL_SANDBOX}"


def executor_json(key: str) -> str:
    return json.dumps({"key": key, "workdir": WORKSPACE, "output_dir": OUTPUT_DIR, "host": "127.0.0.1",
                       "port": EXEC_PORT})


def secret_manifest(name: str, key: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    """The executor's config, key included: the pod reads it as an env var, its spec never holds it."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": pod_labels}, "stringData": {SECRET_KEY: executor_json(key)}}


def owner_patch(name: str, uid: str) -> dict[str, Any]:
    """Makes the pod own its Secret: the garbage collector removes the key with the pod."""
    return {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid,
                                              "blockOwnerDeletion": False}]}}


def claim_manifest(name: str, config: KubernetesConfig, pod_labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": config.pvc_size}}}
    if config.storage_class is not None:
        spec["storageClassName"] = config.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "labels": pod_labels},
            "spec": spec}


def pod_manifest(*, name: str, limits: PodLimits, config: KubernetesConfig, pod_labels: dict[str, str],
                 worker_id: str, secret: str, claim: str | None) -> dict[str, Any]:
    """One sandbox pod: tini, then the executor on the pod's loopback; non-root, no capabilities."""
    resources = {"cpu": f"{round(limits.cpus * 1000)}m", "memory": f"{limits.memory_mb}Mi"}
    container = {
        "name": CONTAINER, "image": limits.image, "imagePullPolicy": "IfNotPresent", "command": COMMAND,
        "workingDir": WORKSPACE,
        "env": [{"name": CONFIG_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": SECRET_KEY}}},
                {"name": "HOME", "value": WORKSPACE}],
        "resources": {"requests": resources, "limits": resources},
        "securityContext": {
            "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True, "runAsUser": config.uid, "runAsGroup": config.gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    volume: dict[str, Any] = {"name": "workspace"}
    init: list[dict[str, Any]] = []
    if claim is not None:
        volume["persistentVolumeClaim"] = {"claimName": claim}
        init.append(_chown_workspace(limits.image, config, container["resources"]))
    else:
        volume["emptyDir"] = {}
    spec: dict[str, Any] = {
        "initContainers": init, "containers": [container], "volumes": [volume], "restartPolicy": "Never",
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "terminationGracePeriodSeconds": config.grace_period_s,
        # runAsNonRoot is the sandbox container's: a claim's init step runs as root to hand it over.
        "securityContext": {"runAsUser": config.uid, "runAsGroup": config.gid, "fsGroup": config.gid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if limits.node_selector:
        spec["nodeSelector"] = dict(limits.node_selector)
    if limits.tolerations:
        spec["tolerations"] = [_toleration(t) for t in limits.tolerations]
    if limits.runtime_class:
        spec["runtimeClassName"] = limits.runtime_class
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": pod_labels, "annotations": {ANNOTATION_WORKER: worker_id}},
            "spec": spec}


def _chown_workspace(image: str, config: KubernetesConfig, resources: dict[str, Any]) -> dict[str, Any]:
    """Hands a claim's root directory to the sandbox user: volumes that ignore fsGroup (hostPath,
    some CSI drivers) come up root-owned. Root with CAP_CHOWN alone, before the sandbox starts."""
    return {"name": "workspace-owner", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["chown", f"{config.uid}:{config.gid}", WORKSPACE], "resources": resources,
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}]}


def _toleration(t: Any) -> dict[str, Any]:
    out = {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect,
           "tolerationSeconds": t.toleration_seconds}
    return {k: v for k, v in out.items() if v is not None}
