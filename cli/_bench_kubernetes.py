"""What the kubernetes backend costs on a cluster: cold pod starts, ``echo hi`` over the port-forward
channel, and the API server's own exec (the floor a naive exec-per-action backend would pay).

``await bench_kubernetes(kubeconfig=..., namespace=..., image=...)`` drives the backend directly (no
NATS, no controller: the backend's own latencies) and returns p50/p90 in ms:

- ``cold_create_ms``: ``create()`` — Secret, Pod, watched readiness, executor ready line, claim;
- ``echo_warm_ms``: ``echo hi`` through one ExecutorClient whose keep-alive connection (one
  port-forward WebSocket) is reused, as a worker's client is;
- ``echo_new_channel_ms``: the same with a new client (a new port-forward) per action;
- ``warm_claim_ms``: ``claim()`` of a prestarted pod (what a warm pool hands out);
- ``api_exec_ms``: ``connect_get_namespaced_pod_exec(["echo", "hi"])`` on the same pod.

``corral bench --kubernetes [--kubeconfig F] [--namespace NS]`` prints it.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from protocol import CmdOutput, CmdRun, SessionSpec, new_id


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": round(ordered[len(ordered) // 2], 2),
            "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 2)}


async def _echo(client: Any) -> float:
    started = time.perf_counter()
    observations = [o async for o in client.execute(CmdRun(id=new_id(), command="echo hi"))]
    elapsed = (time.perf_counter() - started) * 1000
    last = observations[-1]
    assert isinstance(last, CmdOutput) and last.content == "hi\n", last
    return elapsed


async def bench_kubernetes(*, kubeconfig: str | None = None, namespace: str = "default", image: str | None = None,
                           creates: int = 5, round_trips: int = 200, execs: int = 30) -> dict[str, Any]:
    """p50/p90 (ms) of cold creates, warm and new-channel ``echo hi``, and the API server's exec."""
    from kubernetes_asyncio import client as k8s

    from workers.backends.kubernetes import KubernetesConfig
    from workers.backends.kubernetes import KubernetesBackend

    config = KubernetesConfig(kubeconfig=kubeconfig, namespace=namespace, image=image, cpus=0.1, memory_mb=256,
                              grace_period_s=1)
    with tempfile.TemporaryDirectory(prefix="corral-bench-k8s-") as base_dir:
        backend = KubernetesBackend(base_dir=base_dir, worker_id="bench-" + new_id()[:8], config=config)
        try:
            await backend.prepare()
            cold = []
            for n in range(creates):
                started = time.perf_counter()
                handle = await backend.create(f"s-bench-{n}", SessionSpec())
                cold.append((time.perf_counter() - started) * 1000)
                if n < creates - 1:
                    await backend.destroy(handle)
            claims = []  # the warm-pool path: pods prestarted (unclaimed), then bound to a session
            for n, spare in enumerate([await backend.prestart(SessionSpec()) for _ in range(creates)]):
                started = time.perf_counter()
                claimed = await backend.claim(spare, f"s-bench-warm-{n}", SessionSpec())
                claims.append((time.perf_counter() - started) * 1000)
                await backend.destroy(claimed)
            client = backend.client(handle)
            try:
                for _ in range(20):  # warm-up: the connection, the shell
                    await _echo(client)
                warm = [await _echo(client) for _ in range(round_trips)]
            finally:
                await client.aclose()
            fresh = []
            for _ in range(min(round_trips, 50)):
                one = backend.client(handle)
                try:
                    fresh.append(await _echo(one))
                finally:
                    await one.aclose()
            assert backend._ws is not None
            core_ws = k8s.CoreV1Api(backend._ws)
            floor = []
            for _ in range(execs + 3):
                started = time.perf_counter()
                out = await core_ws.connect_get_namespaced_pod_exec(
                    handle.container_id, namespace, container="sandbox", command=["echo", "hi"],
                    stderr=True, stdin=False, stdout=True, tty=False)
                floor.append((time.perf_counter() - started) * 1000)
                assert "hi" in str(out), out
            await backend.destroy(handle)
        finally:
            await backend.aclose()
    return {"cold_create_ms": _ms(cold), "warm_claim_ms": _ms(claims), "echo_warm_ms": _ms(warm), "echo_new_channel_ms": _ms(fresh),
            "api_exec_ms": _ms(floor[3:]), "namespace": namespace, "image": image or backend._default_image}
