"""What the kubernetes backend costs on a cluster: cold pod starts, ``echo hi`` over the port-forward
channel, and the API server's own exec (the floor a naive exec-per-action backend would pay).

``await bench_kubernetes(kubeconfig=..., namespace=..., image=...)`` drives the backend directly (no
NATS, no controller: the backend's own latencies) and returns p50/p90 in ms:

- ``cold_create_ms``: ``create()`` — Secret, Pod, watched readiness, executor ready line, claim;
- ``echo_warm_ms``: ``echo hi`` through one ExecutorClient whose keep-alive connection (one
  port-forward WebSocket) is reused, as a worker's client is;
- ``echo_new_channel_ms``: the same with a new client (a new port-forward) per action;
- ``warm_claim_ms``: ``claim()`` of a prestarted pod (what a warm pool hands out);
- ``api_exec_ms``: ``connect_get_namespaced_pod_exec(["echo", "hi"])`` on the same pod;
- ``echo_nats_ms``: ``echo hi`` as a user sees it — a session through an embedded nats-server, a
  controller and a worker owning the pod — and, in the same run, ``echo_nats_docker_ms``: the same
  on a Docker container (when an engine answers), the comparison the issue's target names.

``corral bench --kubernetes [--kubeconfig F] [--namespace NS]`` prints it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Any

from protocol import CmdOutput, CmdRun, Resources, SessionSpec, new_id


ECHO_SPEC = SessionSpec(resources=Resources(cpus=1.0))


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


async def _echo_through_nats(backend: Any, base_dir: str, n: int) -> dict[str, float]:
    """``echo hi`` round trips of one session served by a worker owning ``backend``."""
    from actors.controller import Controller, ControllerConfig
    from actors.embedded import EmbeddedNats
    from protocol import Client
    from workers.worker import Worker, WorkerConfig

    from .bench import _round_trips

    async with EmbeddedNats(f"{base_dir}/nats") as nats:
        ctl = Controller(ControllerConfig(nats_url=nats.url))
        await ctl.start()
        worker = Worker(WorkerConfig(nats_url=nats.url, worker_id=backend._worker_id,
                                     backend=backend.name, base_dir=f"{base_dir}/worker", warm_pool=0),
                        backend=backend)
        await worker.start()
        try:
            async with await Client.connect(nats.url) as client:
                async with await client.create_session(resources={"cpus": ECHO_SPEC.resources.cpus}) as session:
                    await _round_trips(session, 30)  # warm-up: the channel, the shell
                    samples = await _round_trips(session, n)
        finally:
            await worker.aclose()
            await ctl.aclose()
    return _ms([x * 1000 for x in samples])


async def _docker_echo_through_nats(base_dir: str, n: int) -> dict[str, float] | str:
    """The Docker backend's through-NATS ``echo hi``, or why it was not measured."""
    try:
        import aiodocker

        from images import ensure_runtime_image
        from workers.backends import DockerConfig
        from workers.backends.docker import DockerBackend

        async with aiodocker.Docker() as docker:
            image = await ensure_runtime_image(docker)
    except Exception as exc:  # noqa: BLE001 - no engine: the comparison is skipped, saying why
        return f"not measured: no Docker engine or runtime image ({exc})"
    backend = DockerBackend(base_dir=f"{base_dir}/docker", worker_id="docker-bench-" + new_id()[:6],
                            config=DockerConfig(image=image))
    try:
        return await _echo_through_nats(backend, f"{base_dir}/d", n)
    finally:
        await backend.aclose()


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
                await backend.destroy(handle)
            # The round trips get a whole CPU, as a session does by default: at the small pods' 0.1 CPU
            # the CFS quota (10 ms per 100 ms) throttles the executor and ~5% of round trips take 75 ms.
            handle = await backend.create("s-bench-echo", ECHO_SPEC)
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
            through_nats = await _echo_through_nats(backend, f"{base_dir}/k", round_trips)
        finally:
            await backend.aclose()
        docker = await _docker_echo_through_nats(base_dir, round_trips)
    return {"cold_create_ms": _ms(cold), "warm_claim_ms": _ms(claims), "echo_warm_ms": _ms(warm), "echo_new_channel_ms": _ms(fresh),
            "api_exec_ms": _ms(floor[3:]), "echo_nats_ms": through_nats, "echo_nats_docker_ms": docker,
            "namespace": namespace, "image": image or backend._default_image}
