"""End-to-end check of the compose deployment, from the host, with the Python SDK.

    compose/check [--no-prepare] [--backend docker|local] [--keep]

Brings up a private copy of compose/docker-compose.yml (project ``corral-check-<pid>``, NATS
published on a free 127.0.0.1 port, its own worker ids and host directory), waits for NATS to be
healthy and both workers to heartbeat, creates a session, runs ``echo hi``, checks the output,
closes the session, checks that the audit writer recorded it, then ``down -v``. Prints one
``check: ...`` line per step and exits non-zero on any failure (after printing the services' logs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPOSE_DIR = Path(__file__).resolve().parent
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
WORKERS = ("worker-1", "worker-2")


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"check: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One docker-compose project of compose/docker-compose.yml with its own port, ids and dirs."""

    def __init__(self, *, backend: str | None) -> None:
        pid = os.getpid()
        self.project = f"corral-check-{pid}"
        self.port = free_port()
        self.worker_prefix = f"check{pid}-"
        self.host_dir = Path(tempfile.mkdtemp(prefix=f"corral-check-{pid}-"))
        self.env = {**os.environ, "CORRAL_NATS_PORT": str(self.port), "CORRAL_HOST_DIR": str(self.host_dir),
                    "CORRAL_WORKER_PREFIX": self.worker_prefix, "CORRAL_WARM_POOL": "0"}
        if backend:
            self.env["CORRAL_WORKER_BACKEND"] = backend
        self.url = f"nats://127.0.0.1:{self.port}"

    def compose(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
        argv = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(argv, env=self.env, text=True, capture_output=capture)
        if check and result.returncode != 0:
            raise CheckFailed(f"`docker-compose {' '.join(args)}` exited with {result.returncode}: "
                              f"{(result.stderr or '')[-1500:]}")
        return result

    def worker_ids(self) -> set[str]:
        return {self.worker_prefix + w for w in WORKERS}

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "30", check=False, capture=True)
        # Sandboxes are the workers' containers, not compose's: a worker killed before it drained
        # would leave them behind.
        for wid in self.worker_ids():
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=corral.worker={wid}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
        shutil.rmtree(self.host_dir, ignore_errors=True)


async def wait_for_workers(stack: Stack, deadline_s: float) -> float:
    """Connect through the published port and wait until every worker heartbeats; seconds waited."""
    from protocol import Client, CorralError

    started = time.monotonic()
    client = None
    while client is None:
        try:
            client = await Client.connect(stack.url, first_attempts=1, connect_timeout=2)
        except CorralError:
            if time.monotonic() - started > deadline_s:
                raise CheckFailed(f"NATS at {stack.url} did not accept a connection within {deadline_s} s") from None
            await asyncio.sleep(0.5)
    async with client:
        while True:
            try:
                seen = {w.worker_id for w in await client.workers()}
            except CorralError:
                seen = set()  # the controller is not answering yet
            if stack.worker_ids() <= seen:
                return time.monotonic() - started
            if time.monotonic() - started > deadline_s:
                raise CheckFailed(f"workers {sorted(stack.worker_ids() - seen)} did not heartbeat within {deadline_s} s "
                                  f"(seen: {sorted(seen)})")
            await asyncio.sleep(0.5)


async def run_session(url: str) -> tuple[str, str, str, float]:
    """Create a session, run `echo hi`, close it: (session id, "<worker> (<backend>)", output, seconds to create)."""
    from protocol import Client, CmdOutput, CmdRun, new_id

    async with await Client.connect(url) as client:
        started = time.monotonic()
        session = await client.create_session()
        create_s = time.monotonic() - started
        try:
            out = await session.run(CmdRun(id=new_id(), command="echo hi"), wait_s=60)
        finally:
            await session.close()
    if not isinstance(out, CmdOutput):
        raise CheckFailed(f"`echo hi` answered {out!r}")
    if out.status != "completed" or out.exit_code != 0 or out.content.strip() != "hi":
        raise CheckFailed(f"`echo hi` gave status={out.status} exit_code={out.exit_code} content={out.content!r}")
    info = session.info
    return info.session_id, f"{info.worker_id} ({info.backend} backend)", out.content.strip(), create_s


def wait_for_audit(stack: Stack, session_id: str, deadline_s: float) -> None:
    started = time.monotonic()
    while True:
        # export verifies the whole hash chain first, then prints the session's records
        found = stack.compose("exec", "-T", "audit", "corral", "audit", "export", "--session", session_id,
                              "/var/lib/corral-audit", check=False, capture=True)
        count = len(found.stdout.splitlines()) if found.returncode == 0 else 0
        if count > 0:
            say(f"audit writer recorded {count} events of the session (the chain verifies)")
            return
        if time.monotonic() - started > deadline_s:
            raise CheckFailed(f"the audit log has no event of session {session_id} after {deadline_s} s")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compose/check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-prepare", action="store_true", help="do not run compose/prepare first")
    parser.add_argument("--backend", default=None, help="worker backend (default: $CORRAL_WORKER_BACKEND, else docker)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (prints how to stop it)")
    args = parser.parse_args(argv)
    if shutil.which("docker-compose") is None:
        say("FAILED: docker-compose is not installed (apt-get install docker-compose)")
        return 2
    started = time.monotonic()
    if not args.no_prepare:
        prepare = subprocess.run([str(COMPOSE_DIR / "prepare")] + (["--no-sandbox-image"] if args.backend == "local" else []))
        if prepare.returncode != 0:
            say("FAILED: compose/prepare failed")
            return 1
        say(f"prepare {time.monotonic() - started:.1f}s")
    stack = Stack(backend=args.backend)
    backend = stack.env.get("CORRAL_WORKER_BACKEND", "docker")
    say(f"project {stack.project}, NATS {stack.url}, backend {backend}")
    ok = False
    try:
        t0 = time.monotonic()
        stack.compose("up", "-d", capture=True)
        say(f"up -d {time.monotonic() - t0:.1f}s (NATS healthy)")
        waited = asyncio.run(wait_for_workers(stack, deadline_s=90))
        say(f"workers {' '.join(sorted(stack.worker_ids()))} heartbeating after {waited:.1f}s more")
        sid, wid, output, create_s = asyncio.run(run_session(stack.url))
        say(f"session {sid} on {wid}: created in {create_s:.2f}s, `echo hi` -> {output!r}, closed")
        wait_for_audit(stack, sid, deadline_s=15)
        say(f"stack up to verified in {time.monotonic() - t0:.1f}s")
        ok = True
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
    except Exception as exc:  # an SDK error or anything else: still report it and tear down
        say(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        if not ok:
            logs = stack.compose("logs", "--no-color", "--tail", "40", check=False, capture=True)
            print(logs.stdout[-8000:], file=sys.stderr)
        if args.keep:
            say(f"kept; stop with: docker-compose -p {stack.project} -f {COMPOSE_FILE} down -v")
        else:
            t1 = time.monotonic()
            stack.down()
            say(f"down -v {time.monotonic() - t1:.1f}s")
    say("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(COMPOSE_DIR.parent))
    sys.exit(main())
