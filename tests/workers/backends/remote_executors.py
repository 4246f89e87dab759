"""Executors the way a remote machine runs them (``corral-executor --listen``), on loopback, for tests:
a throw-away CA and server certificate (``cli._pki``), key files, and the executors file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import secrets
import signal
import sys
from typing import NamedTuple

from cli._pki import Pki, make_pki, write_private  # noqa: F401  (re-exported for the tests)


class RunningExecutor(NamedTuple):
    proc: asyncio.subprocess.Process
    address: str
    key_file: str
    workdir: Path

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)


async def start_executor(root: Path, *, key: str | None = None, pki: Pki | None = None) -> RunningExecutor:
    """``corral-executor --listen tcp://127.0.0.1:0`` (TLS with ``pki``), once its ready line is out."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_private(root / "key", key or secrets.token_hex(24))
    tls = ["--tls-cert", pki.cert_file, "--tls-key", pki.key_file] if pki else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "executor", "--listen", "tcp://127.0.0.1:0", "--key-file", str(key_file), *tls,
        "--workdir", str(root / "work"), "--output-dir", str(root / "out"),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, start_new_session=True)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))  # type: ignore[union-attr]
    assert ready["ready"], ready
    return RunningExecutor(proc, f"tcp://127.0.0.1:{ready['port']}", str(key_file), root / "work")


async def stop_executor(executor: RunningExecutor) -> None:
    if executor.proc.returncode is None:
        try:
            os.killpg(executor.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    await executor.proc.wait()


def write_executors_file(path: Path, executors: list[RunningExecutor], ca_file: str | None = None) -> str:
    """The worker's executors file (JSON) for these executors."""
    entries = [{"address": e.address, "key_file": e.key_file, **({"ca_file": ca_file} if ca_file else {})}
               for e in executors]
    path.write_text(json.dumps(entries, indent=2))
    return str(path)
