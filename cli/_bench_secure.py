"""``corral bench --secure``: what the secure deployment costs a tenant's client per action.

Starts two private ``corral up`` processes, one open and one ``--secure`` (plus one with TLS when
``openssl`` can make a throw-away certificate), adds a tenant to the secure ones, and times the
``echo hi`` round trip through each in alternating batches, so that the machine's drift hits
every deployment alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
import shutil
import sys
import tempfile
import time
from typing import AsyncIterator

from protocol import Client, Credentials

from .bench import _round_trips

BATCH = 50


def _pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)
    return {"n": len(ordered), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}


async def _run(*args: str, cwd: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{args[0]} failed: {err.decode(errors='replace')[-500:]}")


async def _throwaway_tls(d: Path) -> tuple[str, str] | None:
    """A self-signed certificate for 127.0.0.1 (it is its own CA), or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    await _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
               "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=str(d))
    return str(d / "cert.pem"), str(d / "key.pem")


@contextlib.asynccontextmanager
async def _up(data: Path, backend: str | None, *extra: str) -> AsyncIterator[int]:
    """A private ``corral up`` in its own process; yields its port once it is up."""
    from actors.embedded import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "up", "--port", str(port), "--data-dir", str(data), "--warm-pool", "1",
        *(["--backend", backend] if backend else []), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 120)  # type: ignore[union-attr]
        if b"corral is up" not in line:
            raise RuntimeError(f"corral up {' '.join(extra)} did not start: {line!r}")
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def _tenant(data: Path) -> Credentials:
    from actors.secure import SecureStore

    store = SecureStore(data)
    creds = store.add_tenant("bench")
    await store.reload(probe=creds)
    return creds


async def secure_bench(backend: str | None, actions: int) -> dict[str, object]:
    # asyncio's TLS transport warns at every close that nats.py's eof_received() returns True: noise here.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="corral-bench-secure-") as tmp:
        root = Path(tmp)
        for name in ("open", "secure", "tls"):
            (root / name).mkdir()
        tls = await _throwaway_tls(root / "tls")
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, Client] = {}
            port = await stack.enter_async_context(_up(root / "open", backend))
            clients["open"] = await Client.connect(f"nats://127.0.0.1:{port}")
            await stack.enter_async_context(_up(root / "secure", backend, "--secure"))
            clients["secure (tenant client)"] = await Client.connect(creds=await _tenant(root / "secure"))
            if tls is not None:
                await stack.enter_async_context(_up(root / "tls", backend, "--secure", "--tls-cert", tls[0],
                                                    "--tls-key", tls[1]))
                clients["secure + TLS (tenant client)"] = await Client.connect(creds=await _tenant(root / "tls"))
            for client in clients.values():
                stack.push_async_callback(client.aclose)
            sessions = {name: await c.create_session(**({"backend": backend} if backend else {}))
                        for name, c in clients.items()}
            for session in sessions.values():
                stack.push_async_callback(session.close)
                await _round_trips(session, 20)  # warm: the shell, the consumer, the connection
            samples: dict[str, list[float]] = {name: [] for name in sessions}
            started = time.perf_counter()
            while min(len(s) for s in samples.values()) < actions:
                for name, session in sessions.items():
                    samples[name] += await _round_trips(session, min(BATCH, actions - len(samples[name])))
            rows = {name: _pcts(s) for name, s in samples.items()}
    open_p50 = rows["open"]["p50_ms"]
    for row in rows.values():
        row["p50_over_open_ms"] = round(row["p50_ms"] - open_p50, 3)
    return {"measure": "echo hi round trip", "backend": backend or "auto", "cores": os.cpu_count(),
            "duration_s": round(time.perf_counter() - started, 1), "deployments": rows}


def print_secure(results: dict[str, object]) -> None:
    rows = results["deployments"]
    assert isinstance(rows, dict)
    print(f"\ncorral bench --secure  ({results['measure']}, backend {results['backend']}, {results['cores']} cores)")
    print(f"{'deployment':30} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'p50 +ms':>9}")
    for name, r in rows.items():
        print(f"{name:30} {r['n']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9} {r['p99_ms']:>9} {r['p50_over_open_ms']:>9}")
