"""The kubernetes backend's configuration and what one session's pod gets from it.

Pure data and checks: nothing here talks to the cluster (and nothing imports kubernetes_asyncio),
so the registry can name the config of a worker that never starts a pod.
"""

from __future__ import annotations

import json

import msgspec

from protocol import Placement, SessionSpec, Toleration

from .._limits import invalid, resolve_network, resolve_resources

IMPORT_HINT = "./dev k8s import REF"
"""How the test cluster (and any containerd node without a registry) gets a local image."""


class KubernetesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name",
                       tag="kubernetes"):
    """How the kubernetes backend builds pods; session specs may ask for less, never more."""

    kubeconfig: str | None = None
    """A kubeconfig file; None: KUBECONFIG / ~/.kube/config, else the in-cluster service account."""
    in_cluster: bool = False
    """Use the pod's service account even when a kubeconfig exists."""
    context: str | None = None
    namespace: str = "default"
    """Where the pods, their Secrets and PVCs go; it must exist."""
    image: str | None = None
    """The sandbox image as the cluster names it; None: the runtime image ``images`` builds for
    this uid (its tag is computed, or the image built, on the worker's Docker engine) — the cluster
    must have it too (``./dev k8s import REF`` on the test cluster)."""
    uid: int = 1000
    gid: int = 1000
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    """Recorded for the spec's sake; a pod's pid limit is the kubelet's (podPidsLimit), not the pod's."""
    max_cpus: float | None = None
    max_memory_mb: int | None = None
    max_pids: int = 32768
    start_timeout_s: float = 60.0
    """From the pod's creation to the executor's ready line (scheduling, volume, image, start)."""
    storage_class: str | None = None
    """For persistent sessions' workspace PVCs; None: the cluster's default StorageClass."""
    pvc_size: str = "1Gi"
    node_selector: dict[str, str] = {}
    tolerations: tuple[Toleration, ...] = ()
    runtime_classes: dict[str, str] = {}
    """isolation -> RuntimeClass name, e.g. {"gvisor": "gvisor", "kata": "kata-qemu"}."""
    grace_period_s: int = 5
    """Pod deletion grace (tini forwards SIGTERM to the executor)."""
    service_account: str | None = None
    """The pods' service account; its token is never mounted."""


class PodLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one pod gets, after the session's wishes met the config's defaults and caps."""

    image: str
    cpus: float
    memory_mb: int
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    runtime_class: str | None
    persistent: bool

    def pool_key(self) -> str:
        return json.dumps([self.image, self.cpus, self.memory_mb, sorted(self.node_selector.items()),
                           [msgspec.to_builtins(t) for t in self.tolerations], self.runtime_class or "",
                           self.persistent])


def resolve_pod_limits(spec: SessionSpec, config: KubernetesConfig, default_image: str | None) -> PodLimits:
    """The pod's limits for a spec, validated; BackendError ``invalid_spec`` names the first bad value."""
    wanted = resolve_resources(spec, memory_mb=config.memory_mb, pids=config.pids, cpus=config.cpus,
                               max_memory_mb=config.max_memory_mb, max_pids=config.max_pids, max_cpus=config.max_cpus)
    if resolve_network(spec, "none") != "none":
        invalid("the kubernetes backend gives pods no egress policy of its own: network must be 'none' "
                "(the cluster's NetworkPolicies decide what a pod reaches)")
    if spec.image is not None and not spec.image.strip():
        invalid("image is empty")
    if spec.workdir is not None and not spec.workdir.startswith("/"):
        invalid(f"workdir={spec.workdir!r} must be an absolute path inside the sandbox (e.g. /workspace)")
    if spec.mounts:
        invalid("the kubernetes backend mounts no host directories (use persistent=true for a lasting workspace)")
    if spec.plugins:
        invalid("the kubernetes backend runs the default runtime image only: plugins need their image variants")
    placement = spec.placement or Placement()
    runtime_class = config.runtime_classes.get(spec.isolation) if spec.isolation not in (None, "default") else None
    if spec.isolation not in (None, "default") and runtime_class is None and placement.runtime_class is None:
        known = ", ".join(sorted(config.runtime_classes)) or "none configured"
        invalid(f"isolation={spec.isolation!r} maps to no RuntimeClass (runtime_classes: {known})")
    for key, value in placement.node_selector.items():
        if key in config.node_selector and config.node_selector[key] != value:
            invalid(f"placement.node_selector {key}={value!r} contradicts the worker's "
                    f"{key}={config.node_selector[key]!r}")
    image = spec.image or config.image or default_image
    if image is None:
        invalid(f"no sandbox image: set the kubernetes backend's image (an image the cluster has; {IMPORT_HINT})")
    return PodLimits(image=image, cpus=wanted.cpus or config.cpus, memory_mb=wanted.memory_mb,
                     node_selector={**config.node_selector, **placement.node_selector},
                     tolerations=(*config.tolerations, *placement.tolerations),
                     runtime_class=placement.runtime_class or runtime_class or None, persistent=spec.persistent)
