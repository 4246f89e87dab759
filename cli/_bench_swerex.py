"""``corral bench --swerex``: SWE-ReX's own remote runtime against ``CorralRuntime``, in one run.

Both sides run ``run_in_session(BashAction("echo hi", check="silent"))`` in a persistent bash
session (``check="silent"`` is what SWE-agent's ``communicate`` sends), after a warm-up:

  * SWE-ReX: ``swerex-remote`` (its FastAPI server, with its ``LocalRuntime``) started here as a
    process of its own, driven by SWE-ReX's ``RemoteRuntime`` over HTTP on loopback, which is what
    ``DockerDeployment`` does once the container is up (minus the container's port forwarding);
  * SWE-ReX's ``DockerDeployment`` too, when a Docker engine answers: an image ``FROM`` corral's
    runtime image with the swe-rex distribution (and its dependencies) copied in from this
    interpreter's site-packages, so it builds offline; the same ``RemoteRuntime``, through the
    container's published port;
  * corral: a private ``corral up`` in a process of its own (``--backend``, default local), driven
    by ``CorralRuntime`` through NATS.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as metadata
import os
from pathlib import Path
import re
import secrets
import shutil
import sys
import tempfile
import time
from typing import Any

from ._stats import latency_ms

WARMUP = 30



async def _echo(runtime: Any, calls: int) -> dict[str, object]:
    from swerex.runtime.abstract import BashAction, CreateBashSessionRequest

    await runtime.create_session(CreateBashSessionRequest())
    times, misses = [], 0
    for i in range(calls + WARMUP):
        started = time.perf_counter()
        r = await runtime.run_in_session(BashAction(command="echo hi", check="silent", timeout=10))
        if i >= WARMUP:
            times.append(time.perf_counter() - started)
        assert "hi" in r.output, r
        # SWE-ReX's LocalRuntime now and then gives up on the exit code (it waits 0.1 s for the
        # prompt after `echo $?`: exit_code None under check="silent") and the next output then
        # starts with what was left over; counted, not failed
        misses += i >= WARMUP and (r.exit_code != 0 or r.output != "hi\n")
    return {**latency_ms(times), "off": misses}


async def _swerex_side(calls: int) -> dict[str, object]:
    from swerex.runtime.remote import RemoteRuntime

    from actors.embedded import free_port

    port, token = free_port(), secrets.token_hex(16)
    exe = shutil.which("swerex-remote", path=os.path.dirname(sys.executable)) or shutil.which("swerex-remote")
    argv = [exe] if exe else [sys.executable, "-m", "swerex.server"]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--host", "127.0.0.1", "--port", str(port), "--auth-token", token,
        env={k: v for k, v in os.environ.items() if k != "TERM"},  # as in SWE-ReX's containers
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        runtime = RemoteRuntime(host="http://127.0.0.1", port=port, auth_token=token)
        await runtime.wait_until_alive(timeout=60)
        return await _echo(runtime, calls)
    finally:
        proc.terminate()
        await proc.wait()


SWEREX_IMAGE = "corral-bench-swerex:local"


def _copy_distributions(root: str, site: Path) -> None:
    """swe-rex and what it requires (recursively), copied file by file from this interpreter."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for file in dist.files or []:
            src = Path(str(dist.locate_file(file)))
            if str(file).startswith("..") or not src.is_file():
                continue
            dst = site / str(file)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {out.decode(errors='replace')[-2000:]}")
    return out.decode()


async def _swerex_image() -> str:
    base = (await _run(sys.executable, "-m", "cli", "image", "build", "--quiet")).strip().splitlines()[-1]
    with tempfile.TemporaryDirectory(prefix="corral-bench-swerex-") as tmp:
        await asyncio.to_thread(_copy_distributions, "swe-rex", Path(tmp) / "site")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {base}\nUSER root\nCOPY site /opt/swerex-site\n"
            "RUN printf '#!/bin/sh\\nPYTHONPATH=/opt/swerex-site exec python3 -m swerex.server \"$@\"\\n' "
            "> /usr/local/bin/swerex-remote && chmod +x /usr/local/bin/swerex-remote\nUSER corral\n")
        await _run("docker", "build", "-q", "-t", SWEREX_IMAGE, tmp)
    return SWEREX_IMAGE


async def _swerex_docker_side(calls: int) -> dict[str, object]:
    from swerex.deployment.docker import DockerDeployment

    deployment = DockerDeployment(image=await _swerex_image(), pull="never")
    await deployment.start()
    try:
        return await _echo(deployment.runtime, calls)
    finally:
        await deployment.stop()


async def _corral_side(calls: int, backend: str | None) -> dict[str, object]:
    from corral_integrations.swerex import CorralRuntime

    from .bench import corral_up_process

    async with corral_up_process(*(["--backend", backend] if backend else ["--backend", "local"])) as url:
        runtime = await CorralRuntime.start(url)
        try:
            return await _echo(runtime, calls)
        finally:
            await runtime.close()


async def swerex_bench(calls: int = 300, backend: str | None = None) -> dict[str, object]:
    calls = max(calls, 300)
    from .up import resolve_backend

    swerex = await _swerex_side(calls)
    docker = await _swerex_docker_side(calls) if await resolve_backend("auto") == "docker" else None
    corral = await _corral_side(calls, backend)
    return {"swerex_remote_runtime": swerex, "swerex_docker_deployment": docker,
            "corral_runtime": corral, "corral_backend": backend or "local",
            "p50_ratio_swerex_over_corral": round(swerex["p50_ms"] / corral["p50_ms"], 2)}  # type: ignore[operator]


def print_swerex(results: dict[str, object]) -> None:
    rows = [("SWE-ReX RemoteRuntime (swerex-remote)", results["swerex_remote_runtime"]),
            *([("SWE-ReX DockerDeployment", results["swerex_docker_deployment"])] if results["swerex_docker_deployment"] else []),
            (f"CorralRuntime ({results['corral_backend']} backend)", results["corral_runtime"])]
    print("run_in_session(BashAction('echo hi', check='silent')), persistent shell")
    print(f"{'':40} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'n':>5} {'off':>5}")
    for name, row in rows:
        print(f"{name:40} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['mean_ms']:>8} {row['n']:>5} "  # type: ignore[index]
              f"{row['off']:>5}")  # type: ignore[index]
    print("off: answers without exit code 0 or with output other than 'hi\\n'")
    print(f"SWE-ReX / corral, p50: {results['p50_ratio_swerex_over_corral']}x")
