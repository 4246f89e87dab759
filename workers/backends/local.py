"""The local backend: the executor runs as a host subprocess in a per-sandbox directory.

There is NO isolation: a session can read and write everything the worker's user can.
It exists for development, CI and trusted workloads, and says so loudly when it starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import shutil
import signal
import sys
import time

import msgspec
import structlog

from executor.client import ExecutorClient, exact_pid
from protocol import SessionSpec, new_id

from ._base import BackendError, SandboxHandle, deployment_id
from ._hostdir import HostDirBackend, default_socket_dir
from ._plugins import check_plugins_here, code_server_env

log = structlog.get_logger()

NO_ISOLATION_WARNING = (
    "corral local backend: sessions run as host processes with NO ISOLATION "
    "(same user, same filesystem, same network). Use an isolated backend for untrusted code."
)
READY_TIMEOUT_S = 15.0


class LocalConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name", tag="local"):
    socket_dir: str | None = None
    """Host directory of the executors' sockets; default /tmp/corral-<uid> (private to the worker's user)."""
    use_zygote: bool = True
    """Fork executors from a process that has them imported (~15 ms) instead of starting Python (~100 ms)."""
    warn: bool = True
    """Say loudly at start that sessions are not isolated."""


class LocalBackend(HostDirBackend):
    name = "local"

    def __init__(self, *, base_dir: str, worker_id: str, socket_dir: str | None = None, warn: bool = True,
                 use_zygote: bool = True) -> None:
        self._root = Path(base_dir) / "local" / worker_id
        self._root.mkdir(parents=True, exist_ok=True)
        self._socket_dir = default_socket_dir(socket_dir)
        self._worker_id = worker_id
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._use_zygote = use_zygote
        # Keyed by this backend's own directory: another deployment's worker of the same id has its own.
        self._zygote_path = str(self._socket_dir / f"zygote-{deployment_id(str(self._root))}.sock")
        self._zygote_proc: asyncio.subprocess.Process | None = None
        self._zygote_lock = asyncio.Lock()
        if warn:
            print(f"WARNING: {NO_ISOLATION_WARNING}", file=sys.stderr)
            log.warning("local_backend_no_isolation", worker_id=worker_id)

    def client(self, handle: SandboxHandle) -> ExecutorClient:
        """The listener must be the executor this backend started (its pid in the handle)."""
        check = exact_pid(handle.pid) if handle.pid else None
        return ExecutorClient(key=handle.key, socket_path=handle.socket_path, peer_check=check)

    def validate(self, spec: SessionSpec) -> None:
        super().validate(spec)
        check_plugins_here(spec.plugins)  # the executor runs the worker's own interpreter
        for mount in spec.mounts:
            if os.path.realpath(mount.target) != os.path.realpath(mount.source):
                raise BackendError(f"the local backend sees host paths as they are: mount {mount.source!r} "
                                   f"at the same path, not at {mount.target!r}", "invalid_spec")

    def pool_key(self, spec: SessionSpec) -> str | None:
        return "local"  # env, workdir and timeouts are applied at claim: every spec can use a warm one

    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        sandbox_id = "x" + new_id()
        sandbox_dir = self._root / sandbox_id
        key = new_id()
        socket_path = str(self._socket_dir / f"{sandbox_id}.sock")
        (sandbox_dir / "outputs").mkdir(parents=True)
        config = {"key": key, "workdir": str(sandbox_dir / "workspace"), "output_dir": str(sandbox_dir / "outputs"),
                  "socket_path": socket_path}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "NATS_"))}
        env.update(code_server_env())  # the vscode plugin's code-server, if installed on this host
        info = await self._fork(config, sandbox_dir, env) if self._use_zygote else None
        if info is None:
            info = await self._spawn(config, sandbox_dir, env)
        handle = SandboxHandle(sandbox_id=sandbox_id, session_id="", worker_id=self._worker_id, backend=self.name,
                               key=key, socket_path=socket_path, pid=info["pid"],
                               workdir=str(sandbox_dir / "workspace"), created_at=time.time())
        self._save(handle)
        return handle

    async def _spawn(self, config: dict[str, object], sandbox_dir: Path, env: dict[str, str]) -> dict[str, int]:
        """A fresh Python process for the executor (~100 ms: imports dominate)."""
        env = {**env, "CORRAL_EXECUTOR_CONFIG": json.dumps(config)}
        with open(sandbox_dir / "executor.log", "ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "executor", env=env, cwd=str(sandbox_dir),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                start_new_session=True,
            )
        try:
            info = json.loads(await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S))  # type: ignore[union-attr]
        except (asyncio.TimeoutError, ValueError) as exc:
            _kill_group(proc.pid)
            tail = (sandbox_dir / "executor.log").read_text(errors="replace")[-800:]
            raise BackendError(f"executor did not become ready: {exc!r}; log: {tail}") from exc
        self._procs[sandbox_dir.name] = proc
        return info

    async def _fork(self, config: dict[str, object], sandbox_dir: Path, env: dict[str, str]) -> dict[str, int] | None:
        """An executor forked from the zygote (a few ms); None when the zygote cannot serve."""
        try:
            path = await self._zygote()
            reader, writer = await asyncio.open_unix_connection(path)
        except (OSError, BackendError) as exc:
            log.warning("zygote_unavailable", error=str(exc))
            return None
        try:
            request = {"config": config, "cwd": str(sandbox_dir), "log": str(sandbox_dir / "executor.log"), "env": env}
            writer.write(json.dumps(request).encode() + b"\n")
            line = await asyncio.wait_for(reader.readline(), READY_TIMEOUT_S)
            return json.loads(line)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            tail = (sandbox_dir / "executor.log").read_text(errors="replace")[-800:] if (sandbox_dir / "executor.log").exists() else ""
            raise BackendError(f"forked executor did not become ready: {exc!r}; log: {tail}") from exc
        finally:
            writer.close()

    async def _zygote(self) -> str:
        """The fork server's socket, starting the server on first use (or after it died)."""
        async with self._zygote_lock:
            if self._zygote_proc is not None and self._zygote_proc.returncode is None:
                return self._zygote_path
            self._zygote_proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "executor.zygote", self._zygote_path,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                json.loads(await asyncio.wait_for(self._zygote_proc.stdout.readline(), READY_TIMEOUT_S))  # type: ignore[union-attr]
            except (asyncio.TimeoutError, ValueError) as exc:
                self._zygote_proc.kill()
                raise BackendError(f"the executor fork server did not start: {exc!r}") from exc
            return self._zygote_path

    async def destroy(self, handle: SandboxHandle) -> None:
        proc = self._procs.pop(handle.sandbox_id, None)
        if handle.pid:
            _signal_group(handle.pid, signal.SIGTERM)  # the executor closes its shells on SIGTERM
            if proc is not None:
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                except asyncio.TimeoutError:
                    _kill_group(handle.pid)
                    await proc.wait()
            elif not await _exited(handle.pid, 3):
                _kill_group(handle.pid)
        if handle.socket_path:
            Path(handle.socket_path).unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, self._root / handle.sandbox_id, True)

    async def alive(self, handle: SandboxHandle) -> str | None:
        proc = self._procs.get(handle.sandbox_id)
        if proc is not None and proc.returncode is not None:
            return f"executor exited with code {proc.returncode}"
        if handle.pid is None:
            return "no executor process recorded"
        try:
            os.kill(handle.pid, 0)
        except ProcessLookupError:
            return "executor process is gone"
        except PermissionError:
            pass
        if _zombie(handle.pid):  # dead, not yet reaped by whoever inherited it
            return "executor process is gone (exited, not reaped)"
        return None

    async def pause(self, handle: SandboxHandle) -> None:
        await asyncio.to_thread(_signal_tree, handle.pid, signal.SIGSTOP)

    async def resume(self, handle: SandboxHandle) -> None:
        await asyncio.to_thread(_signal_tree, handle.pid, signal.SIGCONT)

    async def aclose(self) -> None:
        """Stop the fork server; sandboxes it forked live on (they are their own sessions)."""
        self._procs.clear()
        if self._zygote_proc is not None and self._zygote_proc.returncode is None:
            self._zygote_proc.terminate()
            await self._zygote_proc.wait()
        Path(self._zygote_path).unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _exited(pid: int, timeout_s: float) -> bool:
    """Wait for a process that is not our child to exit (a pidfd becomes readable); True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return True
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await asyncio.wait_for(done, timeout_s)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _signal_tree(root: int | None, sig: int) -> None:
    """Signal a process and all of its descendants (shells run in sessions of their own)."""
    if not root:
        return
    signalled: set[int] = set()
    for _ in range(3):  # repeat: a process may fork while the tree is being walked
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as f:
                        ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        todo, found = [root], []
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        fresh = [pid for pid in found if pid not in signalled]
        if not fresh:
            return
        for pid in fresh:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        signalled.update(fresh)


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)
