"""``corral bench --remote``: what a remote executor's channel costs against a local one's, in one run.

Starts, on this machine: ``corral-executor --listen tcp://127.0.0.1:0`` twice (TLS with a throw-away
CA, and plain TCP) claimed through the remote backend, and a sandbox of the local backend (HTTP
over a Unix socket). Then times ``echo hi`` from the worker's side of the channel (one keep-alive
connection, ``ExecutorClient.execute``, request to final observation) over each, after a warm-up;
and the remote backend's claim + release cycle (what a session start and end cost it). Loopback
has no network latency: over a real network add the round trip time to every number.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import secrets
import sys
import tempfile
import time

from protocol import CmdOutput, CmdRun, SessionSpec, new_id

from ._pki import make_pki, write_private
from ._stats import latency_ms

WARMUP = 30



async def _echo(backend, handle, calls: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    client = backend.client(handle)
    times = []
    try:
        for i in range(calls + WARMUP):
            started = time.perf_counter()
            final = [o async for o in client.execute(CmdRun(id=new_id(), command="echo hi"))][-1]
            if i >= WARMUP:
                times.append(time.perf_counter() - started)
            assert isinstance(final, CmdOutput) and final.content == "hi\n", final
    finally:
        await client.aclose()
    return latency_ms(times)


async def _listen(root: Path, pki=None) -> tuple[asyncio.subprocess.Process, dict[str, str]]:  # type: ignore[no-untyped-def]
    """A listening executor, as on a VM; its entry for the executors file."""
    root.mkdir(parents=True)
    key_file = write_private(root / "key", secrets.token_hex(24))
    tls = ["--tls-cert", pki.cert_file, "--tls-key", pki.key_file] if pki else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "executor", "--listen", "tcp://127.0.0.1:0", "--key-file", str(key_file), *tls,
        "--workdir", str(root / "work"), "--output-dir", str(root / "out"),
        env={k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))  # type: ignore[union-attr]
    entry = {"address": f"tcp://127.0.0.1:{ready['port']}", "key_file": str(key_file)}
    return proc, {**entry, "ca_file": pki.ca_file} if pki else entry


async def remote_bench(calls: int = 300, cycles: int = 30) -> dict[str, object]:
    from workers.backends import RemoteConfig, RemoteExecutor, make_backend

    calls = max(calls, 300)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="corral-bench-remote-") as tmp:
        root = Path(tmp)
        pki = make_pki(root / "pki")
        procs = []
        local = make_backend("local", base_dir=str(root / "data"), worker_id="bench-local")
        try:
            for name, tls in (("tcp_tls", pki), ("tcp_plain", None)):
                proc, entry = await _listen(root / name, tls)
                procs.append(proc)
                backend = make_backend(RemoteConfig(executors=[RemoteExecutor(**entry)]),
                                       base_dir=str(root / "data"), worker_id=f"bench-{name}")
                handle = await backend.create("s-bench-" + name, SessionSpec())
                results[f"echo_{name}"] = await _echo(backend, handle, calls)
                if tls is not None:
                    await backend.destroy(handle)
                    results["claim_release_tls"] = await _cycles(backend, cycles)
                else:
                    await backend.destroy(handle)
            handle = await local.create("s-bench-unix", SessionSpec())
            results["echo_unix_socket"] = await _echo(local, handle, calls)
            await local.destroy(handle)
        finally:
            await local.aclose()
            for proc in procs:
                proc.terminate()
                await proc.wait()
    tls, unix = results["echo_tcp_tls"], results["echo_unix_socket"]
    results["tls_over_unix_p50_ratio"] = round(tls["p50_ms"] / unix["p50_ms"], 2)  # type: ignore[index]
    return results


async def _cycles(backend, n: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """A session's start and end on a remote executor: claim (health, claim) and release."""
    claims, releases = [], []
    for i in range(n):
        started = time.perf_counter()
        handle = await backend.create(f"s-cycle-{i}", SessionSpec())
        claims.append(time.perf_counter() - started)
        started = time.perf_counter()
        await backend.destroy(handle)
        releases.append(time.perf_counter() - started)
    return {"claim": latency_ms(claims), "release": latency_ms(releases)}


def print_remote(results: dict[str, object]) -> None:
    rows = [("echo hi, TCP + TLS (remote)", results["echo_tcp_tls"]), ("echo hi, plain TCP (remote)", results["echo_tcp_plain"]),
            ("echo hi, Unix socket (local)", results["echo_unix_socket"])]
    cycles = results["claim_release_tls"]
    rows += [("claim, TLS (remote)", cycles["claim"]), ("release, TLS (remote)", cycles["release"])]  # type: ignore[index]
    print(f"{'':32} {'p50 ms':>8} {'p99 ms':>8} {'n':>5}")
    for name, row in rows:
        print(f"{name:32} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['n']:>5}")  # type: ignore[index]
    print(f"TCP+TLS / Unix socket, p50: {results['tls_over_unix_p50_ratio']}x (loopback: add the network's round trip)")
