"""``corral bench --minisweagent``: ``echo hi`` through mini-swe-agent's own environments and corral's, in one run.

Times ``env.execute({"command": "echo hi"})`` (each a fresh process, mini's semantics) on
``LocalEnvironment`` (``subprocess`` on the host), ``DockerEnvironment`` (``docker exec`` into a
running container of corral's runtime image, when a Docker engine answers) and
``CorralEnvironment`` on a private ``corral up --backend local`` and, with Docker, ``--backend
docker`` (each its own process, broker on loopback). Needs the ``minisweagent`` extra.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from typing import Any, Callable

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")

WARMUP = 20


def _times(execute: Callable[[dict], dict], n: int) -> list[float]:
    for _ in range(WARMUP):
        execute({"command": "echo hi"})
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = execute({"command": "echo hi"})
        samples.append(time.perf_counter() - t)
        assert out["returncode"] == 0 and out["output"] == "hi\n", out
    return samples


async def _runtime_image() -> str | None:
    if shutil.which("docker") is None:
        return None
    try:
        import aiodocker

        import images

        async with aiodocker.Docker() as docker:
            await asyncio.wait_for(docker.version(), 5)
            return await images.ensure_runtime_image(docker)
    except Exception:  # noqa: BLE001 - no engine: the Docker rows are skipped, and say so
        return None


async def _corral(backend: str, n: int) -> list[float]:
    from corral_integrations.minisweagent import CorralEnvironment

    from .bench import corral_up_process

    async with corral_up_process("--backend", backend) as url:
        def run() -> list[float]:
            with CorralEnvironment(nats_url=url, backend=backend) as env:
                return _times(env.execute, n)
        return await asyncio.to_thread(run)


async def minisweagent_bench(n: int = 500) -> dict[str, Any]:
    from minisweagent.environments.local import LocalEnvironment

    from .bench import _ms

    results: dict[str, Any] = {"calls": n, "command": "echo hi"}
    results["LocalEnvironment"] = _ms(await asyncio.to_thread(_times, LocalEnvironment().execute, n))
    image = await _runtime_image()
    if image:
        from minisweagent.environments.docker import DockerEnvironment

        def docker_run() -> list[float]:
            env = DockerEnvironment(image=image, cwd="/workspace")
            try:
                return _times(env.execute, n)
            finally:
                env.cleanup()
        results["image"] = image
        results["DockerEnvironment"] = _ms(await asyncio.to_thread(docker_run))
    else:
        results["DockerEnvironment"] = "skipped: no Docker engine answers"
    results["CorralEnvironment(local)"] = _ms(await _corral("local", n))
    if image:
        results["CorralEnvironment(docker)"] = _ms(await _corral("docker", n))
    else:
        results["CorralEnvironment(docker)"] = "skipped: no Docker engine answers"
    return results


def print_minisweagent(results: dict[str, Any]) -> None:
    print(f"\nmini-swe-agent execute({results['command']!r}), {results['calls']} calls each, {os.cpu_count()} cores"
          + (f", image {results['image']}" if "image" in results else ""))
    print(f"{'environment':28} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name in ("LocalEnvironment", "DockerEnvironment", "CorralEnvironment(local)", "CorralEnvironment(docker)"):
        r = results[name]
        if isinstance(r, str):
            print(f"{name:28} {r}")
        else:
            print(f"{name:28} {r['p50_ms']:>9} {r['p90_ms']:>9} {r['p99_ms']:>9} {r['mean_ms']:>9}")
