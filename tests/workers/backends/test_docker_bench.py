"""Docker backend numbers, printed (run with ``-s``): cold/warm starts, round trips, idle memory, engine floors.

A benchmark, not a timed test: it asserts only that things work and prints what they cost.
"""

from __future__ import annotations

import statistics
import time

import aiodocker
import pytest

from protocol import CmdRun, SessionSpec, new_id
from workers.backends.docker import DockerBackend, DockerConfig

from .test_docker import ENGINE, client_for, remove_worker_sandboxes, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow]

COLD_N = 20
ECHO_N = 200


def _report(name: str, samples_s: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples_s)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    line = f"{name:<34} n={len(ms):<4} p50={statistics.median(ms):8.2f} ms  p99={p99:8.2f} ms  max={ms[-1]:8.2f} ms"
    print(line)
    return line


async def _exec(container, cmd: list[str]) -> str:
    execution = await container.exec(cmd, stdout=True, stderr=True)
    async with execution.start(detach=False) as stream:
        out = b""
        while (message := await stream.read_out()) is not None:
            out += message.data
    return out.decode()


async def test_docker_backend_numbers(tmp_path, runtime_image):
    worker_id = "wb-" + new_id()[:10]
    backend = DockerBackend(base_dir=str(tmp_path), worker_id=worker_id, config=DockerConfig(image=runtime_image))
    print(f"\nimage {runtime_image}")
    try:
        await backend.engine()
        cold = []
        for _ in range(COLD_N):
            started = time.perf_counter()
            handle = await backend.create("s-" + new_id(), SessionSpec())
            cold.append(time.perf_counter() - started)
            await backend.destroy(handle)
        _report("cold create -> ready (claimed)", cold)

        warm_handles = [await backend.prestart(SessionSpec()) for _ in range(COLD_N)]
        warm = []
        claimed = []
        for handle in warm_handles:
            started = time.perf_counter()
            claimed.append(await backend.claim(handle, "s-" + new_id(), SessionSpec(env={"A": "1"})))
            warm.append(time.perf_counter() - started)
        _report("warm claim", warm)

        handle = claimed[0]
        client = client_for(handle)
        echo = []
        for _ in range(ECHO_N):
            started = time.perf_counter()
            final = [o async for o in client.execute(CmdRun(id=new_id(), command="echo hi"))][-1]
            echo.append(time.perf_counter() - started)
            assert final.content == "hi\n"
        await client.aclose()
        _report("echo hi via ExecutorClient", echo)

        async with aiodocker.Docker() as docker:
            container = docker.containers.container(handle.container_id)
            # Idle executor: an unclaimed one (no shell yet) and a claimed one (its bash not counted).
            for label, h in (("claimed", handle), ("unclaimed", await backend.prestart(SessionSpec()))):
                c = docker.containers.container(h.container_id)
                script = ("for p in /proc/[0-9]*; do case $(cat $p/comm) in corral-exec*|tini) "
                          "echo $(cat $p/comm) $(grep VmRSS $p/status);; esac; done; "
                          "echo cgroup usage $(cat /sys/fs/cgroup/memory/memory.usage_in_bytes "
                          "/sys/fs/cgroup/memory.current 2>/dev/null)")
                out = await _exec(c, ["sh", "-c", script])
                print(f"idle RSS ({label}): {'; '.join(out.strip().splitlines())}")

            raw = []
            for _ in range(50):
                started = time.perf_counter()
                assert (await _exec(container, ["echo", "hi"])).strip() == "hi"
                raw.append(time.perf_counter() - started)
            _report("floor: engine-API exec echo hi", raw)

            run_true = []
            for _ in range(10):
                started = time.perf_counter()
                c = await docker.containers.create({"Image": runtime_image, "Cmd": ["true"],
                                                    "Labels": {"corral.worker": worker_id}})
                await c.start()
                await c.wait()
                await c.delete(force=True)
                run_true.append(time.perf_counter() - started)
            _report("floor: engine-API run --rm true", run_true)
    finally:
        await backend.aclose()
        await remove_worker_sandboxes(str(tmp_path), worker_id, runtime_image)
