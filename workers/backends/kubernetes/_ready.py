"""A sandbox pod's readiness, by watch: its events until the container runs, then the executor's
ready line from its log. Each way a start fails ends the wait with its own error code.

The caller bounds the whole wait (``asyncio.timeout``); nothing here polls.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from protocol import codes

from .._base import BackendError
from ._config import IMPORT_HINT, PodLimits
from ._pod import CONTAINER

IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
UNBOUND_CLAIM = "unbound immediate PersistentVolumeClaims"
"""The scheduler's word for a pod waiting on its claim: a wait for the volume, not a lack of capacity."""
LOG_TAIL_LINES = 20


async def wait_ready(core: Any, namespace: str, name: str, limits: PodLimits, *, claim: str | None) -> None:
    """Return once the executor in pod ``name`` printed its ready line; BackendError when it never will."""
    await _wait_running(core, namespace, name, limits)
    await _read_ready_line(core, namespace, name)


async def _wait_running(core: Any, namespace: str, name: str, limits: PodLimits) -> None:
    while True:  # a watch the server ends (its own timeout) is opened again; the caller's deadline rules
        async with watch.Watch() as w:
            async for event in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                                        timeout_seconds=300):
                if event["type"] == "DELETED":
                    raise BackendError(f"the sandbox pod {name} was deleted while starting")
                if event["type"] == "ERROR":
                    continue
                if await _judge(core, namespace, name, event["raw_object"], limits):
                    return


async def _judge(core: Any, namespace: str, name: str, pod: dict[str, Any], limits: PodLimits) -> bool:
    """True when the container runs; raises for a start that cannot succeed; False: keep watching."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        unschedulable = condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
            and condition.get("reason") == "Unschedulable"
        if unschedulable and UNBOUND_CLAIM not in (condition.get("message") or ""):
            raise BackendError(f"no node can run the sandbox pod: {condition.get('message')}", codes.NO_CAPACITY)
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        _check_waiting(state.get("waiting") or {}, limits)
        if (state.get("terminated") or {}).get("exitCode") not in (None, 0):
            raise BackendError(f"the workspace claim could not be handed to the sandbox user: {state['terminated']}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        _check_waiting(state.get("waiting") or {}, limits)
        if "terminated" in state:
            report = await _exit_report(core, namespace, name, state["terminated"])
            raise BackendError(f"the sandbox exited before its executor was ready: {report}")
        if "running" in state:
            return True
    if status.get("phase") in ("Failed", "Succeeded"):
        raise BackendError(f"the sandbox pod {status['phase'].lower()} before it ran: {status.get('reason')} "
                           f"{status.get('message') or ''}".rstrip())
    return False


def _check_waiting(waiting: dict[str, Any], limits: PodLimits) -> None:
    if waiting.get("reason") in IMAGE_REASONS:
        raise BackendError(f"image {limits.image!r} is not on the cluster's nodes and cannot be pulled "
                           f"({waiting['reason']}: {(waiting.get('message') or '')[:300]}); "
                           f"on a cluster without a registry: {IMPORT_HINT.replace('REF', limits.image)}",
                           codes.IMAGE_NOT_FOUND)
    if waiting.get("reason") in CONFIG_REASONS:
        raise BackendError(f"the sandbox container cannot start ({waiting['reason']}: {waiting.get('message')})")


async def _read_ready_line(core: Any, namespace: str, name: str) -> None:
    """The executor's first stdout line, by following the pod's log; its end first means it exited."""
    try:
        response = await core.read_namespaced_pod_log(name, namespace, container=CONTAINER, follow=True,
                                                      _preload_content=False)
    except ApiException as exc:
        raise BackendError(f"cannot read the sandbox's output: {exc.status} {exc.reason}") from exc
    try:
        # The log is stdout and stderr together: a warning may come before the ready line.
        while line := await response.content.readline():
            try:
                if json.loads(line)["ready"]:
                    return
            except (ValueError, KeyError, TypeError):
                continue
    finally:
        response.release()
    report = await _exit_report(core, namespace, name, None)
    raise BackendError(f"the sandbox exited before its executor was ready: {report}")


async def _exit_report(core: Any, namespace: str, name: str, terminated: dict[str, Any] | None) -> str:
    try:
        if terminated is None:
            pod = await core.read_namespaced_pod(name, namespace)
            statuses = pod.status.container_statuses or []
            t = statuses[0].state.terminated if statuses and statuses[0].state else None
            terminated = {"exitCode": t.exit_code, "reason": t.reason} if t is not None else {}
        tail = await core.read_namespaced_pod_log(name, namespace, container=CONTAINER, tail_lines=LOG_TAIL_LINES)
    except ApiException as exc:
        return f"(cannot inspect it: {exc.status} {exc.reason})"
    return f"exit code {terminated.get('exitCode')} ({terminated.get('reason')}), output: {str(tail)[-800:]!r}"
