"""The bubblewrap backend: each executor runs in its own Linux namespaces, at process speed.

A sandbox is ``bwrap`` around ``python -m workers.executor``: new user, pid, ipc, uts, cgroup,
mount and network namespaces (the network is shared only for ``network="egress"``), a read-only
root (the host's /usr and a few /etc files, or an unpacked image ``rootfs``), private /tmp,
/proc and /dev, a writable /workspace and /outputs, and the executor's Unix socket in a
per-sandbox host directory bound at /run/corral. Inside, the executor runs as uid 1000 with
no capabilities, no_new_privs, nested user namespaces disabled and its own session.

Host side, bwrap runs in a session of its own and without ``--die-with-parent``, so sandboxes
outlive a worker restart; ``destroy`` SIGKILLs the namespace's init (which kills everything in
the pid namespace). Memory, pids and CPU limits come from cgroup v1 when the hierarchies are
writable: the init joins the sandbox's cgroups while bwrap blocks on ``--block-fd``, before the
executor is forked. Where they are not writable a warning is logged once and sandboxes run
without limits.

When the worker runs as root, the sandbox's uid 1000 maps to host uid 0 (capabilities dropped,
read-only binds): bwrap can only map the uid that runs it. Run the worker as an unprivileged
user to make sandbox processes unprivileged on the host as well.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import posixpath
import shutil
import signal
import sys
import time

import msgspec
import structlog

import protocol
from protocol import Mount, SessionSpec, codes, new_id
import workers

from ._base import Backend, BackendError, SandboxHandle, load_handles, save_handle

log = structlog.get_logger()

READY_TIMEOUT_S = 15.0
WORKSPACE = "/workspace"
OUTPUTS = "/outputs"
RUN_DIR = "/run/corral"
WRITABLE = (WORKSPACE, "/tmp")
SANDBOX_UID = 1000
HOSTNAME = "corral"
NETWORKS = ("none", "egress")
HOST_ROOT = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
SKIP_IN_ROOTFS = {"proc", "dev", "sys", "tmp", "run", "etc", "workspace", "outputs"}
HOST_ETC = (
    "alternatives", "bash.bashrc", "ca-certificates", "ca-certificates.conf", "debian_version", "gai.conf",
    "host.conf", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias", "localtime", "magic",
    "magic.mime", "mime.types", "networks", "nsswitch.conf", "os-release", "profile", "protocols", "python3",
    "python3.11", "services", "shells", "ssl", "terminfo", "timezone",
)
SYNTHETIC_ETC = {
    "passwd": f"root:x:0:0:root:/root:/bin/bash\ncorral:x:{SANDBOX_UID}:{SANDBOX_UID}:corral:{WORKSPACE}:/bin/bash\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": f"root:x:0:\ncorral:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
    "hostname": f"{HOSTNAME}\n",
    "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{HOSTNAME}\n",
}
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": WORKSPACE, "USER": "corral",
    "LOGNAME": "corral", "SHELL": "/bin/bash", "LANG": "C.UTF-8", "HOSTNAME": HOSTNAME,
    "PYTHONDONTWRITEBYTECODE": "1",
}


class BubblewrapConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rootfs: str | None = None
    """An unpacked image root to show read-only at / instead of the host's /usr and /etc."""
    socket_dir: str | None = None
    """Host directory of the per-sandbox socket dirs; default /tmp/corral-<uid> (socket paths must stay short)."""
    cgroup_root: str = "/sys/fs/cgroup"
    default_memory_mb: int = 2048
    default_pids: int = 512
    bwrap: str = "bwrap"


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    memory_mb: int
    pids: int
    cpus: float | None = None


def limits_for(spec: SessionSpec, config: BubblewrapConfig) -> Limits:
    """The spec's resources with the backend's defaults; non-positive values are an invalid spec."""
    res = spec.resources
    limits = Limits(memory_mb=res.memory_mb if res and res.memory_mb is not None else config.default_memory_mb,
                    pids=res.pids if res and res.pids is not None else config.default_pids,
                    cpus=res.cpus if res else None)
    for name in ("memory_mb", "pids", "cpus"):
        value = getattr(limits, name)
        if value is not None and value <= 0:
            raise BackendError(f"resources.{name} must be positive, got {value!r}", codes.INVALID_SPEC)
    return limits


def network_for(spec: SessionSpec) -> str:
    network = spec.network or "none"
    if network not in NETWORKS:
        raise BackendError(f"network {network!r} is not supported by bubblewrap (use 'none' or 'egress')",
                           codes.INVALID_SPEC)
    return network


def sandbox_workdir(workdir: str | None) -> str:
    """The session's workdir inside the sandbox; relative paths are under /workspace."""
    path = posixpath.normpath(posixpath.join(WORKSPACE, workdir or "."))
    if not any(path == root or path.startswith(root + "/") for root in WRITABLE):
        raise BackendError(f"workdir {workdir!r} is outside the sandbox's writable areas {WRITABLE}",
                           codes.INVALID_SPEC)
    return path


class BubblewrapBackend(Backend):
    name = "bubblewrap"

    def __init__(self, *, base_dir: str, worker_id: str, config: BubblewrapConfig = BubblewrapConfig()) -> None:
        bwrap = shutil.which(config.bwrap)
        if bwrap is None:
            raise BackendError(f"the bubblewrap backend needs {config.bwrap!r} (Debian package 'bubblewrap')")
        self._config = config
        self._root = Path(base_dir) / "bubblewrap" / worker_id
        self._root.mkdir(parents=True, exist_ok=True)
        self._socket_dir = Path(config.socket_dir or f"/tmp/corral-{os.getuid()}")
        self._socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._worker_id = worker_id
        self._cgroups = _Cgroups(config.cgroup_root)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._static_args = [bwrap, *self._namespace_args(), *self._root_args()]

    def pool_key(self, spec: SessionSpec) -> str | None:
        try:
            limits, network = limits_for(spec, self._config), network_for(spec)
        except BackendError:
            return None  # never pooled: the cold start reports the error
        mounts = ",".join(f"{m.source}>{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts)
        return f"bwrap:{network}:{limits.memory_mb}m:{limits.pids}p:{limits.cpus or 0}c:{mounts}"

    def cgroup_path(self, controller: str, sandbox_id: str) -> Path | None:
        """The sandbox's cgroup of one controller ('memory', 'pids', 'cpu'); None where not writable."""
        return self._cgroups.path(controller, sandbox_id) if self._cgroups.enabled(controller) else None

    # ------------------------------------------------------------------ start
    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        limits, network = limits_for(spec, self._config), network_for(spec)
        sandbox_id = "b" + new_id()
        sandbox_dir = self._root / sandbox_id
        run_dir = self._socket_dir / sandbox_id
        for path in (sandbox_dir / "workspace", sandbox_dir / "outputs"):
            path.mkdir(parents=True)
        run_dir.mkdir(mode=0o700)
        key = new_id()
        config = {"key": key, "workdir": WORKSPACE, "output_dir": OUTPUTS, "socket_path": f"{RUN_DIR}/executor.sock"}
        try:
            cgroups = self._cgroups.create(sandbox_id, limits)
            proc, init_pid = await self._spawn(sandbox_id, sandbox_dir, run_dir, network, config, cgroups,
                                               spec.mounts)
        except BaseException:
            await self._cleanup(sandbox_id)
            raise
        self._procs[sandbox_id] = proc
        handle = SandboxHandle(sandbox_id=sandbox_id, session_id="", worker_id=self._worker_id, backend=self.name,
                               key=key, socket_path=str(run_dir / "executor.sock"), pid=init_pid, workdir=WORKSPACE,
                               created_at=time.time())
        self._save(handle)
        return handle

    async def _spawn(self, sandbox_id: str, sandbox_dir: Path, run_dir: Path, network: str, config: dict[str, str],
                     cgroups: list[Path], mounts: list[Mount]) -> tuple[asyncio.subprocess.Process, int]:
        """Start bwrap; return it and the host pid of the sandbox's init once the executor is ready."""
        config_r, config_w = os.pipe()  # the key reaches the executor through a pipe: no argv, no environ
        os.write(config_w, json.dumps(config).encode())
        os.close(config_w)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe() if cgroups else (-1, -1)
        child_fds = [fd for fd in (config_r, info_w, block_r) if fd >= 0]
        args = [*self._static_args, *self._sandbox_args(sandbox_dir, run_dir, network, mounts),
                "--info-fd", str(info_w), *(["--block-fd", str(block_r)] if cgroups else []),
                "--", sys.executable, "-m", "workers.executor", f"/dev/fd/{config_r}"]
        try:
            with open(sandbox_dir / "executor.log", "ab") as stderr:
                proc = await asyncio.create_subprocess_exec(
                    *args, env={"PATH": os.environ.get("PATH", SANDBOX_ENV["PATH"])}, cwd=str(sandbox_dir),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                    pass_fds=child_fds, start_new_session=True,
                )
        except BaseException:
            for fd in (info_r, block_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        init_pid = None
        try:
            info = await asyncio.wait_for(_read_json_fd(info_r), READY_TIMEOUT_S)
            init_pid = int(info["child-pid"])
            for cgroup in cgroups:
                (cgroup / "cgroup.procs").write_text(str(init_pid))
            if cgroups:
                os.write(block_w, b"1")  # the init may now fork the executor, inside the cgroups
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)  # type: ignore[union-attr]
            if not json.loads(line or b"null"):
                raise ValueError("the executor exited before it was ready")
        except BaseException as exc:
            if init_pid is not None:
                _kill(init_pid)
            _kill(proc.pid)
            await proc.wait()
            if not isinstance(exc, (asyncio.TimeoutError, ValueError, KeyError, OSError)):
                raise
            tail = (sandbox_dir / "executor.log").read_text(errors="replace")[-800:]
            raise BackendError(f"sandbox did not become ready: {exc!r}; log: {tail}") from exc
        finally:
            if block_w >= 0:
                os.close(block_w)
        return proc, init_pid

    # ------------------------------------------------------------------ claim
    def claim_workdir(self, handle: SandboxHandle, spec: SessionSpec) -> str:
        return sandbox_workdir(spec.workdir)

    def sandbox_dir(self, handle: SandboxHandle) -> Path:
        return self._root / handle.sandbox_id

    def _save(self, handle: SandboxHandle) -> None:
        save_handle(self.sandbox_dir(handle), handle)

    # ---------------------------------------------------------------- destroy
    async def destroy(self, handle: SandboxHandle) -> None:
        proc = self._procs.pop(handle.sandbox_id, None)
        if handle.pid and _is_sandbox(handle.pid, handle.sandbox_id):
            _kill(handle.pid)  # the pid namespace's init: the kernel kills every process in it
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                _kill(proc.pid)
                await proc.wait()
        await self._cleanup(handle.sandbox_id)

    async def _cleanup(self, sandbox_id: str) -> None:
        await self._cgroups.remove(sandbox_id)
        await asyncio.to_thread(shutil.rmtree, self._socket_dir / sandbox_id, True)
        await asyncio.to_thread(shutil.rmtree, self._root / sandbox_id, True)

    async def list(self) -> list[SandboxHandle]:
        return [h for h in await asyncio.to_thread(load_handles, self._root) if await self.alive(h) is None]

    async def alive(self, handle: SandboxHandle) -> str | None:
        proc = self._procs.get(handle.sandbox_id)
        if proc is not None and proc.returncode is not None:
            return f"bwrap exited with code {proc.returncode}"
        if handle.pid is None:
            return "no sandbox process recorded"
        if not _is_sandbox(handle.pid, handle.sandbox_id):
            return "the sandbox's init process is gone"
        return None

    async def aclose(self) -> None:
        self._procs.clear()

    # ---------------------------------------------------------- command line
    def _namespace_args(self) -> list[str]:
        env = [arg for name, value in SANDBOX_ENV.items() for arg in ("--setenv", name, value)]
        return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                "--gid", str(SANDBOX_UID), "--hostname", HOSTNAME, "--new-session", "--cap-drop", "ALL",
                "--clearenv", *env]

    def _root_args(self) -> list[str]:
        """The read-only root, /etc and the executor's Python: the same for every sandbox."""
        root = self._config.rootfs or "/"
        python = _python_paths()
        python_tops = {p.split("/")[1] for p in python}
        # /proc, /dev and the private /tmp first: binds made after them (the executor's Python,
        # which may live under /tmp, e.g. a CI checkout) show through instead of being hidden.
        args: list[str] = ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            keep = name in HOST_ROOT if root == "/" else name not in SKIP_IN_ROOTFS and name not in python_tops
            if not keep:
                continue
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), f"/{name}"]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, f"/{name}"]
        bound = [f"/{name}" for name in HOST_ROOT] if root == "/" else []
        for path in python:
            if not any(path == b or path.startswith(b + "/") for b in bound):
                args += ["--ro-bind", path, path]
                bound.append(path)
        etc_dir = self._root / "etc"
        etc_dir.mkdir(exist_ok=True)
        for name, text in SYNTHETIC_ETC.items():
            (etc_dir / name).write_text(text)
        if root == "/":
            args += [a for name in HOST_ETC if os.path.exists(f"/etc/{name}") for a in ("--ro-bind", f"/etc/{name}", f"/etc/{name}")]
            args += [a for name in SYNTHETIC_ETC for a in ("--ro-bind", str(etc_dir / name), f"/etc/{name}")]
        else:
            args += ["--ro-bind", os.path.join(root, "etc"), "/etc"]
            args += [a for name in SYNTHETIC_ETC if _plain_file(os.path.join(root, "etc", name))
                     for a in ("--ro-bind", str(etc_dir / name), f"/etc/{name}")]
        return args

    def _sandbox_args(self, sandbox_dir: Path, run_dir: Path, network: str, mounts: list[Mount]) -> list[str]:
        args = ["--bind", str(sandbox_dir / "workspace"), WORKSPACE, "--bind", str(sandbox_dir / "outputs"), OUTPUTS,
                "--bind", str(run_dir), RUN_DIR]
        if network == "egress":
            args.append("--share-net")
            etc = os.path.join(self._config.rootfs or "/", "etc", "resolv.conf")
            if os.path.exists("/etc/resolv.conf") and (self._config.rootfs is None or _plain_file(etc)):
                args += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
        args += [a for m in mounts for a in ("--ro-bind" if m.read_only else "--bind", m.source, m.target)]
        return args + ["--remount-ro", "/", "--chdir", WORKSPACE]


class _Cgroups:
    """Per-sandbox cgroup v1 directories under <root>/<controller>/corral/, where writable."""

    CONTROLLERS = ("memory", "pids", "cpu")
    _warned = False

    def __init__(self, root: str) -> None:
        self._parents: dict[str, Path] = {}
        for controller in self.CONTROLLERS:
            base = Path(root) / controller
            try:
                if (base / "cgroup.procs").exists():
                    (base / "corral").mkdir(exist_ok=True)
                    if os.access(base / "corral", os.W_OK):
                        self._parents[controller] = base / "corral"
            except OSError:
                pass
        missing = [c for c in ("memory", "pids") if c not in self._parents]
        if missing and not _Cgroups._warned:
            _Cgroups._warned = True
            log.warning("bubblewrap_cgroups_unavailable", root=root, missing=missing,
                        detail="sandboxes run without these limits (cgroup v1 hierarchies absent or not writable)")

    def enabled(self, controller: str) -> bool:
        return controller in self._parents

    def path(self, controller: str, sandbox_id: str) -> Path:
        return self._parents[controller] / sandbox_id

    def create(self, sandbox_id: str, limits: Limits) -> list[Path]:
        settings = {
            "memory": [("memory.limit_in_bytes", limits.memory_mb << 20), ("memory.memsw.limit_in_bytes", limits.memory_mb << 20)],
            "pids": [("pids.max", limits.pids)],
            "cpu": [("cpu.cfs_period_us", 100_000), ("cpu.cfs_quota_us", max(1000, int(limits.cpus * 100_000)))]
            if limits.cpus else [],
        }
        made = []
        for controller, parent in self._parents.items():
            path = parent / sandbox_id
            path.mkdir()
            made.append(path)
            for name, value in settings[controller]:
                if (path / name).exists():  # memsw exists only with swap accounting
                    (path / name).write_text(str(value))
        return made

    async def remove(self, sandbox_id: str, timeout_s: float = 5.0) -> None:
        """Remove the sandbox's cgroups once their last process has exited (just after a kill, it may not have)."""
        deadline = time.monotonic() + timeout_s
        for parent in self._parents.values():
            path = parent / sandbox_id
            while path.exists():
                try:
                    path.rmdir()
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log.warning("bubblewrap_cgroup_not_removed", path=str(path), error=str(exc))
                        break
                    await asyncio.sleep(0.01)


def _python_paths() -> list[str]:
    """What `python -m workers.executor` needs: the interpreter, the venv and our packages' sources."""
    packages = [p for pkg in (protocol, workers) for p in pkg.__path__ if os.path.isdir(p)]
    paths = {sys.base_prefix, sys.prefix, *packages}
    real = sorted({os.path.realpath(p) for p in paths} | paths, key=len)
    return [p for i, p in enumerate(real) if not any(p.startswith(q + "/") for q in real[:i])]


def _plain_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


async def _read_json_fd(fd: int) -> dict[str, object]:
    """Read one JSON object from a pipe (bwrap's --info-fd) without blocking the loop; closes fd."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue
        raise ValueError(f"bwrap exited before starting the sandbox ({data[:200]!r})")
    finally:
        transport.close()


def _is_sandbox(pid: int, sandbox_id: str) -> bool:
    """Is pid a live process of this sandbox (its bwrap init's command line names the sandbox dir)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return sandbox_id.encode() in cmdline and state not in ("Z", "X")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
