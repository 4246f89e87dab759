"""The kubernetes backend: one pod per sandbox, driven through the API server (kubernetes_asyncio).

The executor listens on the pod's loopback; the worker reaches it by port-forward through the API
server (``_channel``), so nothing of the pod is exposed and the worker may run outside the cluster.
Readiness is watched: the pod's events until its container runs (image, scheduling and volume
failures end the wait with their own codes), then the executor's ready line from its log.

A handle's ``container_id`` is the pod's name and its ``host`` the pod's namespace (the executor
is never reached at a host address here). Handles are saved under
``base_dir/kubernetes/<worker_id>/<sandbox_id>/`` like Docker's; a pod whose handle file is gone
is still adopted: its key is read back from its Secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
import shutil
import time
from typing import Any, Callable

import msgspec
import structlog
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from executor.client import ExecutorClient
from protocol import SessionSpec, codes, new_id

from .._base import (
    Backend, BackendError, SandboxHandle, claim_executor, deployment_id, load_handle, load_handles, save_handle,
)
from .._docker_spec import LABEL_SANDBOX, LABEL_SESSION
from ._channel import PortForwarder
from ._config import IMPORT_HINT, KubernetesConfig, PodLimits, resolve_pod_limits
from ._pod import (
    EXEC_PORT, SECRET_KEY, WORKSPACE, claim_manifest, claim_name, label_value, labels, owner_patch, pod_manifest,
    pod_name, secret_manifest, secret_name, selector,
)
from ._ready import wait_ready

log = structlog.get_logger()

ANNOTATION_SESSION = "corral.session-id"


class KubernetesBackend(Backend):
    name = "kubernetes"
    can_persist = True
    can_place = True

    def __init__(self, *, base_dir: str, worker_id: str, config: KubernetesConfig | None = None) -> None:
        self.config = config or KubernetesConfig()
        self._worker_id = worker_id
        self._deployment = deployment_id(base_dir)
        self._root = Path(base_dir) / "kubernetes" / worker_id
        self._api: k8s.ApiClient | None = None
        self._ws: WsApiClient | None = None
        self._core: Any = None
        self._forwarder: PortForwarder | None = None
        self._lock = asyncio.Lock()
        self._default_image: str | None = None
        self._owned: set[str] = set()
        """Sandboxes this instance started and has not destroyed (sweep spares them)."""

    @property
    def namespace(self) -> str:
        return self.config.namespace

    # ------------------------------------------------------------------ cluster
    async def core(self) -> Any:
        """The CoreV1Api, connected and checked on first use (one ApiClient and one WsApiClient per backend)."""
        if self._core is None:
            async with self._lock:
                if self._core is None:
                    await self._connect()
        return self._core

    async def _connect(self) -> None:
        configuration = k8s.Configuration()
        try:
            if self.config.in_cluster:
                k8s_config.load_incluster_config(client_configuration=configuration)
            else:
                await k8s_config.load_kube_config(config_file=self.config.kubeconfig, context=self.config.context,
                                                  client_configuration=configuration, persist_config=False)
        except (k8s_config.ConfigException, OSError, TypeError) as exc:
            where = self.config.kubeconfig or ("the in-cluster service account" if self.config.in_cluster
                                               else "KUBECONFIG / ~/.kube/config")
            raise BackendError(f"cannot load the Kubernetes client config from {where}: {exc}") from exc
        api, ws = k8s.ApiClient(configuration), WsApiClient(configuration)
        core = k8s.CoreV1Api(api)
        try:
            async with asyncio.timeout(10):
                await core.list_namespaced_pod(self.namespace, limit=1)
        except (ApiException, OSError, TimeoutError) as exc:
            await api.close()
            await ws.close()
            reason = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc) or type(exc).__name__
            raise BackendError(f"cannot list pods in namespace {self.namespace!r} at {configuration.host}: {reason} "
                               "(does the namespace exist, and may this identity manage pods there?)") from exc
        self._api, self._ws, self._core = api, ws, core
        self._forwarder = PortForwarder(k8s.CoreV1Api(ws))
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)

    async def _image(self) -> str | None:
        """The default image: the config's, else the runtime image ``images`` makes for this uid
        (built on the worker's Docker engine when missing; the cluster must have it too)."""
        if self.config.image is not None or self._default_image is not None:
            return self.config.image or self._default_image
        try:
            import aiodocker
            from images import ensure_runtime_image
        except ImportError:
            return None
        try:
            async with aiodocker.Docker() as docker:
                self._default_image = await ensure_runtime_image(docker, uid=self.config.uid, gid=self.config.gid)
        except Exception as exc:  # no engine here (an in-cluster worker): the config must name the image
            log.warning("k8s_runtime_image_unknown", error=str(exc), worker_id=self._worker_id)
            return None
        return self._default_image

    def limits(self, spec: SessionSpec, image: str | None = None) -> PodLimits:
        return resolve_pod_limits(spec, self.config, image or self._default_image or self.config.image or "unknown")

    def validate(self, spec: SessionSpec) -> None:
        super().validate(msgspec.structs.replace(spec, isolation=None))  # isolation is a RuntimeClass here
        self.limits(spec)

    def pool_key(self, spec: SessionSpec) -> str | None:
        if spec.persistent:
            return None  # a workspace claim is the session's own
        try:
            return self.limits(spec).pool_key()
        except BackendError:
            return None

    async def prepare(self, progress: Callable[[str], None] | None = None) -> None:
        await self.core()
        if await self._image() is None:
            raise BackendError(f"no sandbox image: set the kubernetes backend's image to one the cluster has "
                               f"({IMPORT_HINT})", codes.IMAGE_NOT_FOUND)

    # ------------------------------------------------------------- lifecycle
    async def create(self, session_id: str, spec: SessionSpec) -> SandboxHandle:
        handle = await self._start(spec, session_id)
        try:
            return await self.claim(handle, session_id, spec)
        except BaseException:
            await asyncio.shield(self.destroy(handle))
            raise

    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        return await self._start(spec, "")

    async def _start(self, spec: SessionSpec, session_id: str, *, sandbox_id: str | None = None,
                     key: str | None = None) -> SandboxHandle:
        core = await self.core()
        limits = resolve_pod_limits(spec, self.config, await self._image())
        sandbox_id = sandbox_id or "k" + new_id()
        handle = SandboxHandle(sandbox_id=sandbox_id, session_id=session_id, worker_id=self._worker_id,
                               backend=self.name, key=key or new_id(), container_id=pod_name(sandbox_id),
                               host=self.namespace, workdir=WORKSPACE, created_at=time.time())
        self._owned.add(sandbox_id)
        started = time.perf_counter()
        await asyncio.to_thread(self._save, handle)  # a trace before anything exists in the cluster
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                await self._launch(core, handle, limits)
                await wait_ready(core, self.namespace, handle.container_id or "", limits,
                                 claim=claim_name(sandbox_id) if limits.persistent else None)
        except TimeoutError:
            reason = await self._stuck_reason(core, handle, limits)
            await asyncio.shield(self.destroy(handle))
            raise BackendError(f"the sandbox pod did not start within {self.config.start_timeout_s:g} s: "
                               f"{reason}") from None
        except BaseException:
            await asyncio.shield(self.destroy(handle, keep_claim=sandbox_id is not None and limits.persistent))
            raise
        log.info("k8s_sandbox_started", sandbox_id=sandbox_id, session_id=session_id or None, worker_id=self._worker_id,
                 namespace=self.namespace, start_ms=round((time.perf_counter() - started) * 1000, 1))
        return handle

    async def _launch(self, core: Any, handle: SandboxHandle, limits: PodLimits) -> None:
        sid, name = handle.sandbox_id, handle.container_id or ""
        pod_labels = labels(sandbox_id=sid, session_id=handle.session_id, worker_id=self._worker_id,
                            deployment=self._deployment)
        claim = claim_name(sid) if limits.persistent else None
        secret = secret_manifest(secret_name(sid), handle.key, pod_labels)
        await self._call(core.create_namespaced_secret(self.namespace, secret), "create its Secret")
        if claim is not None:
            try:
                await core.create_namespaced_persistent_volume_claim(self.namespace, claim_manifest(claim, self.config,
                                                                                                    pod_labels))
            except ApiException as exc:
                if exc.status != 409:  # a recreated pod finds its claim
                    raise _api_error(exc, "create its workspace claim") from exc
        manifest = pod_manifest(name=name, limits=limits, config=self.config, pod_labels=pod_labels,
                                worker_id=self._worker_id, secret=secret_name(sid), claim=claim)
        manifest["metadata"]["annotations"][ANNOTATION_SESSION] = handle.session_id
        pod = await self._call(core.create_namespaced_pod(self.namespace, manifest), "create its pod")
        await self._call(core.patch_namespaced_secret(secret_name(sid), self.namespace,
                                                      owner_patch(name, pod.metadata.uid)), "own its Secret")

    async def _call(self, pending: Any, what: str) -> Any:
        try:
            return await pending
        except ApiException as exc:
            raise _api_error(exc, what) from exc

    async def _stuck_reason(self, core: Any, handle: SandboxHandle, limits: PodLimits) -> str:
        """Why a start ran out of time: an unbound workspace claim, else the pod's last state."""
        try:
            if limits.persistent:
                pvc = await core.read_namespaced_persistent_volume_claim(claim_name(handle.sandbox_id), self.namespace)
                if pvc.status.phase != "Bound":
                    storage = pvc.spec.storage_class_name or "the cluster's default StorageClass"
                    return (f"its workspace claim {claim_name(handle.sandbox_id)!r} is still {pvc.status.phase} "
                            f"(storage class {storage}: does it exist, and does its provisioner run?)")
            pod = await core.read_namespaced_pod(handle.container_id, self.namespace)
        except ApiException as exc:
            return f"cannot inspect it ({exc.status} {exc.reason})"
        conditions = [(c.type, c.status, c.reason) for c in pod.status.conditions or []]
        return f"pod phase {pod.status.phase}, conditions {conditions}"

    def client(self, handle: SandboxHandle) -> ExecutorClient:
        pod, namespace = handle.container_id or pod_name(handle.sandbox_id), handle.host or self.namespace

        async def connect() -> Any:
            await self.core()
            assert self._forwarder is not None
            return await self._forwarder.open(pod, namespace, EXEC_PORT)
        return ExecutorClient(key=handle.key, connect=connect)

    async def claim(self, handle: SandboxHandle, session_id: str, spec: SessionSpec) -> SandboxHandle:
        self.limits(spec)
        claimed = await claim_executor(self.client(handle), handle, session_id, spec, spec.workdir or WORKSPACE)
        core = await self.core()
        patch = {"metadata": {"labels": {LABEL_SESSION: label_value(session_id)},
                              "annotations": {ANNOTATION_SESSION: session_id}}}
        await self._call(core.patch_namespaced_pod(claimed.container_id, claimed.host or self.namespace, patch),
                         "label its pod with the session")
        await asyncio.to_thread(self._save, claimed)
        return claimed

    async def recreate(self, handle: SandboxHandle, spec: SessionSpec) -> SandboxHandle:
        """A new pod for a persistent session whose pod is gone, on the same workspace claim and key."""
        core = await self.core()
        await _wait_deleted(core, self.namespace, handle.container_id or pod_name(handle.sandbox_id),
                            self.config.grace_period_s + 30)
        try:
            await core.delete_namespaced_secret(secret_name(handle.sandbox_id), self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _api_error(exc, "replace its Secret") from exc
        fresh = await self._start(msgspec.structs.replace(spec, persistent=True), handle.session_id,
                                  sandbox_id=handle.sandbox_id, key=handle.key)
        return await self.claim(fresh, handle.session_id, spec)

    def _save(self, handle: SandboxHandle) -> None:
        (self._root / handle.sandbox_id).mkdir(parents=True, exist_ok=True)
        save_handle(self._root / handle.sandbox_id, handle)

    def sandbox_dir(self, handle: SandboxHandle) -> Path:
        return self._root / handle.sandbox_id

    async def destroy(self, handle: SandboxHandle, *, keep_claim: bool = False) -> None:
        """Delete the pod (with the configured grace), its Secret and its workspace claim; 404s are fine."""
        core = await self.core()
        sid, namespace = handle.sandbox_id, handle.host or self.namespace
        deletions = [core.delete_namespaced_pod(handle.container_id or pod_name(sid), namespace,
                                                grace_period_seconds=self.config.grace_period_s),
                     core.delete_namespaced_secret(secret_name(sid), namespace)]
        if not (keep_claim or handle.keep):
            deletions.append(core.delete_namespaced_persistent_volume_claim(claim_name(sid), namespace))
        for result in await asyncio.gather(*deletions, return_exceptions=True):
            if isinstance(result, ApiException) and result.status != 404:
                log.warning("k8s_delete_failed", sandbox_id=sid, status=result.status, error=result.reason)
            elif isinstance(result, BaseException) and not isinstance(result, ApiException):
                log.warning("k8s_delete_failed", sandbox_id=sid, error=str(result))
        self._owned.discard(sid)
        if not keep_claim:
            await asyncio.to_thread(shutil.rmtree, self._root / sid, True)

    # ------------------------------------------------------------ inspection
    async def _pods(self) -> list[Any]:
        """This worker's sandbox pods that are not being deleted."""
        core = await self.core()
        found = await self._call(core.list_namespaced_pod(self.namespace, label_selector=self._selector()), "list pods")
        return [p for p in found.items if p.metadata.deletion_timestamp is None]

    def _selector(self) -> str:
        return selector(worker_id=self._worker_id, deployment=self._deployment)

    async def _handle_of(self, pod: Any) -> SandboxHandle:
        """The saved handle, else one rebuilt from the cluster (the key read back from the pod's Secret)."""
        sid = pod.metadata.labels.get(LABEL_SANDBOX, "")
        saved = await asyncio.to_thread(load_handle, self._root / sid)
        if saved is not None:
            return saved
        key = ""
        try:
            secret = await (await self.core()).read_namespaced_secret(secret_name(sid), self.namespace)
            key = json.loads(base64.b64decode((secret.data or {}).get(SECRET_KEY, "")) or "{}").get("key", "")
        except (ApiException, ValueError):
            pass
        return SandboxHandle(sandbox_id=sid, session_id=(pod.metadata.annotations or {}).get(ANNOTATION_SESSION, ""),
                             worker_id=self._worker_id, backend=self.name, key=key, container_id=pod.metadata.name,
                             host=self.namespace, workdir=WORKSPACE,
                             created_at=created.timestamp() if (created := pod.metadata.creation_timestamp) else 0.0)

    async def list(self) -> list[SandboxHandle]:
        return [await self._handle_of(p) for p in await self._pods() if _running(p) is None]

    async def inventory(self) -> list[SandboxHandle]:
        found = {h.sandbox_id: h for h in [await self._handle_of(p) for p in await self._pods()]}
        for handle in await asyncio.to_thread(load_handles, self._root):
            found.setdefault(handle.sandbox_id, handle)
        return list(found.values())

    async def sweep(self, known_session_ids: set[str] | frozenset[str]) -> list[str]:
        """Delete this worker's pods, Secrets and claims whose session is unknown; their sandbox ids."""
        core = await self.core()
        sessions: dict[str, str] = {}
        for pod in await self._pods():
            sessions[pod.metadata.labels[LABEL_SANDBOX]] = (pod.metadata.annotations or {}).get(ANNOTATION_SESSION, "")
        for listing in (core.list_namespaced_secret, core.list_namespaced_persistent_volume_claim):
            for item in (await self._call(listing(self.namespace, label_selector=self._selector()), "list")).items:
                sessions.setdefault(item.metadata.labels[LABEL_SANDBOX], item.metadata.labels.get(LABEL_SESSION, ""))
        removed = []
        for sid, session_id in sessions.items():
            saved = await asyncio.to_thread(load_handle, self._root / sid)
            session_id = saved.session_id if saved is not None else session_id
            if sid in self._owned or (session_id and session_id in known_session_ids):
                continue
            await self.destroy(saved or SandboxHandle(sandbox_id=sid, session_id=session_id, worker_id=self._worker_id,
                                                      backend=self.name, key="", container_id=pod_name(sid),
                                                      host=self.namespace))
            log.info("k8s_orphan_removed", sandbox_id=sid, session_id=session_id or None, worker_id=self._worker_id)
            removed.append(sid)
        return removed

    async def alive(self, handle: SandboxHandle) -> str | None:
        core = await self.core()
        try:
            pod = await core.read_namespaced_pod(handle.container_id or pod_name(handle.sandbox_id),
                                                 handle.host or self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "pod deleted"
            raise _api_error(exc, "read its pod") from exc
        if pod.metadata.deletion_timestamp is not None:
            return "pod deleted"
        return _running(pod)

    async def aclose(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.aclose()
        for api in (self._ws, self._api):
            if api is not None:
                await api.close()
        self._api = self._ws = self._core = self._forwarder = None


def _running(pod: Any) -> str | None:
    """None if the pod runs and its container too, else why not."""
    statuses = pod.status.container_statuses or []
    state = statuses[0].state if statuses else None
    if state is not None and state.terminated is not None:
        t = state.terminated
        if t.reason == "OOMKilled":
            return "OOMKilled: the sandbox ran out of memory"
        return f"exited with code {t.exit_code}"
    if pod.status.phase != "Running" or state is None or state.running is None:
        waiting = state.waiting.reason if state is not None and state.waiting is not None else None
        return f"pod {pod.status.phase}" + (f" ({waiting})" if waiting else "")
    return None


def _api_error(exc: ApiException, what: str) -> BackendError:
    try:
        message = json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        message = exc.reason
    code = codes.INVALID_SPEC if exc.status in (400, 422) else codes.SANDBOX_FAILED
    return BackendError(f"the API server refused to {what}: {exc.status} {message}", code)


async def _wait_deleted(core: Any, namespace: str, name: str, timeout_s: float) -> None:
    from kubernetes_asyncio import watch

    async with asyncio.timeout(timeout_s):
        while True:
            try:
                await core.read_namespaced_pod(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            async with watch.Watch() as w:
                async for event in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                                            timeout_seconds=int(timeout_s)):
                    if event["type"] == "DELETED":
                        return
