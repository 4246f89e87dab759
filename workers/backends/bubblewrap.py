"""The bubblewrap backend: each executor runs in its own Linux namespaces, at process speed.

A sandbox is ``bwrap`` around the executor: new user, pid, ipc, uts, cgroup, mount and network
namespaces, a read-only root (the host's /usr and a few /etc files, or an unpacked image
``rootfs``), private /tmp, /proc and /dev, a writable /workspace and /outputs, and the executor
runtime read-only at /run/corral (see ``_bwrap_runtime``; sessions whose plugins need Python
modules get the runtime that carries them, and their own warm pool). Inside, the executor runs as uid 1000
with no capabilities, no_new_privs, nested user namespaces disabled, its own session, and a
seccomp filter (``_bwrap_seccomp``: mounts, namespaces, keyrings, BPF, io_uring, TIOCSTI, the
x32 ABI and the rest of what Docker's default profile denies fail with EPERM).

Host identity. bwrap maps the sandbox's uid to the host user that runs it. A root worker runs
bwrap as the dedicated unprivileged user ``sandbox_user`` (``corral-sandbox``, made by
``./dev setup``) and refuses to start without it or without the seccomp filter, so sandbox
processes and the files they make are never host root's. The worker itself stays root (cgroups,
network set-up). Its sandbox files live under ``host_dir`` (/var/lib/corral-sandbox), a
nosuid,nodev bind mount, so even a setuid file planted there is inert on the host; each
workspace and outputs directory is 0700 and owned by the sandbox user; handles and logs are
root's (0600). A worker that is not root runs bwrap as itself, its files under its data dir.

The executor channel. The worker binds the executor's listening Unix socket itself, in a host
directory of its own that no sandbox sees, and hands the listening fd to the executor through
bwrap; the sandbox has no path to the socket it could replace.

Network. ``none``: only a loopback. ``egress``: a namespace of its own behind slirp4netns,
which cannot reach the host's loopback nor any address of the host (``_bwrap_net``).

Lifetime. bwrap runs in a session of its own and without ``--die-with-parent``, so sandboxes
(and their slirp4netns) outlive a worker restart; ``destroy`` SIGKILLs the namespace's init,
which kills everything in the pid namespace, and slirp4netns exits with it. Memory, pids and CPU
limits come from cgroup v1 when the hierarchies are writable: the init joins the sandbox's
cgroups while bwrap blocks on ``--block-fd``, before the executor is forked. Where they are not
writable a warning is logged once and sandboxes run without limits.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import posixpath
import shutil
import signal
import time
from typing import Callable

import msgspec
import structlog

from protocol import Mount, SessionSpec, new_id

from . import _bwrap_net as net
from ._base import BackendError, SandboxHandle, deployment_id, save_handle
from ._bwrap_cgroups import Cgroups
from ._bwrap_host import (
    SandboxUser,
    ensure_nosuid_mount,
    host_memory_mb,
    make_dir,
    readable_by,
    sandbox_user,
)
from ._bwrap_runtime import LAUNCHER, RUNTIME_MOUNT, ExecutorPython, build_runtime, executor_python
from ._bwrap_seccomp import compile_filter
from ._bwrap_spawn import SpawnFds, listen_unix, private_file, read_json_fd
from ._hostdir import HostDirBackend, default_socket_dir
from ._limits import Resources, invalid, resolve_network, resolve_resources
from ._plugins import check_plugins_here, code_server_mounts, mcp_server_modules, needs_plugin_runtime, servable_modules

log = structlog.get_logger()

READY_TIMEOUT_S = 15.0
WORKSPACE = "/workspace"
OUTPUTS = "/outputs"
WRITABLE = (WORKSPACE, "/tmp")
SANDBOX_UID = 1000
HOSTNAME = "corral"
DEFAULT_HOST_DIR = "/var/lib/corral-sandbox"
HOST_ROOT = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
SKIP_IN_ROOTFS = {"proc", "dev", "sys", "tmp", "run", "etc", "workspace", "outputs"}
HOST_ETC = (
    "alternatives", "bash.bashrc", "ca-certificates", "ca-certificates.conf", "debian_version", "fonts", "gai.conf",
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
EGRESS_ETC = {"resolv.conf": net.RESOLV_CONF}
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": WORKSPACE, "USER": "corral",
    "LOGNAME": "corral", "SHELL": "/bin/bash", "LANG": "C.UTF-8", "HOSTNAME": HOSTNAME,
    "PYTHONDONTWRITEBYTECODE": "1",
}
PLUGINS_ENV = {
    "IPYTHONDIR": "/tmp/corral-ipython", "JUPYTER_RUNTIME_DIR": "/tmp/corral-jupyter/runtime",
    "JUPYTER_DATA_DIR": "/tmp/corral-jupyter/data", "JUPYTER_PLATFORM_DIRS": "1",
}
"""The executor's environment besides ``SANDBOX_ENV`` in sandboxes with plugin modules: IPython's and
Jupyter's files under the writable /tmp (as the jupyter image variant sets them; kernels inherit them)."""


class BubblewrapConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name",
                       tag="bubblewrap"):
    rootfs: str | None = None
    """An unpacked image root to show read-only at / instead of the host's /usr and /etc."""
    socket_dir: str | None = None
    """Host directory of the executors' sockets (never shown to sandboxes); default /tmp/corral-<uid>."""
    sandbox_user: str = "corral-sandbox"
    """The unprivileged host user a root worker runs sandboxes as (ignored when the worker is not root)."""
    host_dir: str | None = None
    """Host directory of the sandboxes' files and the executor runtime; the sandbox user must be able to
    traverse to it. Default: /var/lib/corral-sandbox for a root worker (made a nosuid,nodev mount),
    <base_dir>/bubblewrap otherwise."""
    cgroup_root: str = "/sys/fs/cgroup"
    default_memory_mb: int = 2048
    default_pids: int = 512
    max_pids: int = 32768
    egress_deny: tuple[str, ...] = ("169.254.0.0/16",)
    """CIDRs egress sandboxes may not reach besides the host's own addresses (link-local: cloud metadata)."""
    bwrap: str = "bwrap"
    slirp4netns: str = "slirp4netns"


Limits = Resources


def limits_for(spec: SessionSpec, config: BubblewrapConfig, *, host_memory_mb: int | None = None,
               host_cpus: int | None = None) -> Limits:
    """The spec's resources with the backend's defaults, within what the host has; else an invalid spec."""
    return resolve_resources(spec, memory_mb=config.default_memory_mb, pids=config.default_pids, cpus=None,
                             max_memory_mb=host_memory_mb, max_pids=config.max_pids, max_cpus=host_cpus)


def network_for(spec: SessionSpec) -> str:
    return resolve_network(spec)


def sandbox_workdir(workdir: str | None) -> str:
    """The session's workdir inside the sandbox; relative paths are under /workspace."""
    path = posixpath.normpath(posixpath.join(WORKSPACE, workdir or "."))
    if not any(path == root or path.startswith(root + "/") for root in WRITABLE):
        invalid(f"workdir {workdir!r} is outside the sandbox's writable areas {WRITABLE}")
    return path


def host_layout(base_dir: str, worker_id: str, config: BubblewrapConfig) -> tuple[Path, Path]:
    """(the host directory of sandbox files, this backend's directory in it)."""
    if config.host_dir is None and os.geteuid() != 0:
        top = Path(base_dir) / "bubblewrap"
        return top, top / worker_id
    top = Path(config.host_dir or DEFAULT_HOST_DIR)
    return top, top / deployment_id(base_dir) / worker_id


class BubblewrapBackend(HostDirBackend):
    name = "bubblewrap"

    def __init__(self, *, base_dir: str, worker_id: str, config: BubblewrapConfig = BubblewrapConfig()) -> None:
        bwrap = shutil.which(config.bwrap)
        if bwrap is None:
            raise BackendError(f"the bubblewrap backend needs {config.bwrap!r} (Debian package 'bubblewrap')")
        self._config = config
        self._bwrap = bwrap
        self._user = sandbox_user(config.sandbox_user)
        if not self._user.is_worker and shutil.which("setpriv") is None:
            raise BackendError("a root worker starts sandboxes through setpriv (Debian package 'util-linux')")
        self._seccomp = _seccomp_program()
        self._top, self._root = host_layout(base_dir, worker_id, config)
        self._make_root()
        self._socket_dir = default_socket_dir(config.socket_dir)
        self._worker_id = worker_id
        self._host_memory_mb = host_memory_mb()
        self._host_cpus = os.cpu_count()
        self._cgroups = Cgroups(config.cgroup_root)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._helpers: dict[str, asyncio.subprocess.Process] = {}
        self._ready: dict[bool, _Ready] = {}
        """By whether the sandbox carries plugin modules: its runtime and the command line it shares."""
        self._python: ExecutorPython | None = None
        self._ready_lock = asyncio.Lock()

    def _make_root(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the sandbox user must traverse to its workspaces, and list nothing on the way
            for path in (self._top, *[p for p in self._root.parents if self._top in p.parents], self._root):
                os.chmod(path, 0o711)

    @property
    def sandbox_user(self) -> SandboxUser:
        return self._user

    def _limits(self, spec: SessionSpec) -> Limits:
        return limits_for(spec, self._config, host_memory_mb=self._host_memory_mb, host_cpus=self._host_cpus)

    def validate(self, spec: SessionSpec) -> None:
        super().validate(spec)
        # The runtime copies the plugins' modules from this interpreter's distributions.
        check_plugins_here(spec.plugins)
        self._limits(spec)
        sandbox_workdir(spec.workdir)
        self._plugin_mounts(spec)
        for mount in spec.mounts:
            if not readable_by(mount.source, self._user.uid, self._user.gid, execute=True):
                invalid(f"mount source {mount.source!r} is not readable by the sandbox user {self._user.name!r} "
                         f"(uid {self._user.uid}), which runs bubblewrap sandboxes: make it and its parents o+rx")
        if network_for(spec) == "egress" and (missing := net.missing_for_egress(self._config.slirp4netns)):
            invalid(f"network='egress' on bubblewrap needs {', '.join(missing)} on the worker's host "
                     "(Debian packages slirp4netns, iproute2, util-linux; `./dev setup` installs them)")

    def pool_key(self, spec: SessionSpec) -> str | None:
        try:
            limits, network = self._limits(spec), network_for(spec)
        except BackendError:
            return None  # never pooled: the cold start reports the error
        mounts = ",".join(f"{m.source}>{m.target}:{'ro' if m.read_only else 'rw'}"
                          for m in [*spec.mounts, *self._plugin_mounts(spec)])
        runtime = "plugins" if needs_plugin_runtime(spec) else "core"
        return f"bwrap:{runtime}:{network}:{limits.memory_mb}m:{limits.pids}p:{limits.cpus or 0}c:{mounts}"

    def _plugin_mounts(self, spec: SessionSpec) -> list[Mount]:
        """What the session's plugins bring from the host: the vscode plugin's code-server, read-only."""
        return code_server_mounts(spec.plugins, lambda p: readable_by(p, self._user.uid, self._user.gid, execute=True))

    def cgroup_path(self, controller: str, sandbox_id: str) -> Path | None:
        """The sandbox's cgroup of one controller ('memory', 'pids', 'cpu'); None where not writable."""
        return self._cgroups.path(controller, sandbox_id) if self._cgroups.enabled(controller) else None

    # ------------------------------------------------------------------ set-up
    async def prepare(self, progress: Callable[[str], None] | None = None) -> None:
        await self._ensure_ready()
        if missing := net.missing_for_egress(self._config.slirp4netns):
            log.warning("bubblewrap_egress_unavailable", missing=missing,
                        detail="sessions asking for network='egress' will be refused")

    async def _ensure_ready(self, plugins: bool = False) -> "_Ready":
        """Once per backend and runtime (with plugin modules or not): the nosuid mount, the executor
        runtime and the command line every sandbox of it shares."""
        if (ready := self._ready.get(plugins)) is not None:
            return ready
        async with self._ready_lock:
            if plugins not in self._ready:
                self._ready[plugins] = await self._make_ready(plugins)
        return self._ready[plugins]

    async def _make_ready(self, plugins: bool) -> "_Ready":
        if os.geteuid() == 0:
            await asyncio.to_thread(ensure_nosuid_mount, self._top)
        modules = tuple(dict.fromkeys((*servable_modules(), *mcp_server_modules()))) if plugins else ()
        started = time.monotonic()
        etc = {**SYNTHETIC_ETC, **EGRESS_ETC}
        runtime = await asyncio.to_thread(build_runtime, self._top / ".runtime", etc, modules)
        if self._python is None:
            root = self._config.rootfs or "/"
            self._python = await asyncio.to_thread(executor_python, self._user.uid, self._user.gid, root)
        root_args = await asyncio.to_thread(self._root_args, self._python, runtime)
        env = [arg for name, value in PLUGINS_ENV.items() for arg in ("--setenv", name, value)] if plugins else []
        log.info("bubblewrap_ready", sandbox_user=self._user.name, uid=self._user.uid, host_dir=str(self._top),
                 python=self._python.executable, runtime=str(runtime), modules=",".join(modules),
                 runtime_s=round(time.monotonic() - started, 3), seccomp=self._seccomp is not None)
        return _Ready(args=[self._bwrap, *self._namespace_args(), *env, *root_args], runtime=runtime)

    # ------------------------------------------------------------------ start
    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        limits, network = self._limits(spec), network_for(spec)
        ready = await self._ensure_ready(plugins=needs_plugin_runtime(spec))
        sandbox_id = "b" + new_id()
        sandbox_dir = self._root / sandbox_id
        self._make_root()  # again: a backend that closed on this directory may have removed it
        make_dir(sandbox_dir, 0o711)
        for name in ("workspace", "outputs"):
            make_dir(sandbox_dir / name, 0o700, self._user)
        socket_path = self._socket_dir / f"{sandbox_id}.sock"
        key = new_id()
        try:
            listener = listen_unix(socket_path)
            config = {"key": key, "workdir": WORKSPACE, "output_dir": OUTPUTS, "listen_fd": listener.fileno()}
            try:
                cgroups = self._cgroups.create(sandbox_id, limits)
                spawn = _Spawn(sandbox_id=sandbox_id, sandbox_dir=sandbox_dir, network=network, config=config,
                               cgroups=cgroups, mounts=[*spec.mounts, *self._plugin_mounts(spec)], listen_fd=listener.fileno(), runtime=ready.runtime)
                init_pid = await self._spawn(ready.args, spawn)
            finally:
                listener.close()  # the executor holds it now
        except BaseException:
            await self._cleanup(sandbox_id)
            raise
        handle = SandboxHandle(sandbox_id=sandbox_id, session_id="", worker_id=self._worker_id, backend=self.name,
                               key=key, socket_path=str(socket_path), pid=init_pid, workdir=WORKSPACE,
                               created_at=time.time())
        self._save(handle)
        return handle

    async def _spawn(self, static_args: list[str], spawn: "_Spawn") -> int:
        """Start bwrap; return the host pid of the sandbox's init once the executor is ready."""
        egress = spawn.network == "egress"
        fds = SpawnFds.open(spawn.config, passed=[spawn.listen_fd], block=bool(spawn.cgroups) or egress, sync=egress,
                            seccomp=self._seccomp)
        assert self._python is not None
        args = [*static_args, *self._sandbox_args(spawn), *fds.bwrap_args(), "--", self._python.executable,
                "-I", "-S", f"{RUNTIME_MOUNT}/{LAUNCHER}", str(fds.config_fd)]
        try:
            with private_file(spawn.sandbox_dir / "executor.log") as stderr:
                proc = await asyncio.create_subprocess_exec(
                    *self._run_as(), *args, env={"PATH": os.environ.get("PATH", SANDBOX_ENV["PATH"])},
                    cwd=str(spawn.sandbox_dir), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=stderr, pass_fds=fds.inherited, start_new_session=True)
        except BaseException:
            fds.close_all()
            raise
        fds.close_child()
        self._procs[spawn.sandbox_id] = proc
        init_pid = None
        try:
            info = await asyncio.wait_for(read_json_fd(fds.take("info")), READY_TIMEOUT_S)
            init_pid = int(info["child-pid"])
            for cgroup in spawn.cgroups:
                (cgroup / "cgroup.procs").write_text(str(init_pid))
            if egress:
                await self._start_egress(spawn, init_pid, fds.take("sync"))
            fds.release()  # the init may now fork the executor, inside the cgroups and the network
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
            tail = (spawn.sandbox_dir / "executor.log").read_text(errors="replace")[-800:]
            raise BackendError(f"sandbox did not become ready: {exc!r}; log: {tail}") from exc
        finally:
            fds.close_all()
        return init_pid

    async def _start_egress(self, spawn: "_Spawn", init_pid: int, exit_fd: int) -> None:
        """Fence the sandbox's network namespace off the host, then give it slirp4netns (closes exit_fd)."""
        try:
            await net.block_host_addresses(init_pid, self._config.egress_deny)
            self._helpers[spawn.sandbox_id] = await net.start_slirp(
                init_pid, user=self._user, exit_fd=exit_fd, log_path=spawn.sandbox_dir / "slirp4netns.log",
                hidden_dir=str(self._top), slirp4netns=self._config.slirp4netns)
        finally:
            os.close(exit_fd)

    def _run_as(self) -> list[str]:
        """The command prefix that makes bwrap run as the sandbox user (none when that is us).

        setpriv rather than Popen's user=/group=: those make CPython fork the whole worker instead
        of vfork, and a fork of a large process stalls the event loop for milliseconds per start."""
        if self._user.is_worker:
            return []
        return ["setpriv", f"--reuid={self._user.uid}", f"--regid={self._user.gid}", "--clear-groups", "--"]

    # ------------------------------------------------------------------ claim
    def claim_workdir(self, handle: SandboxHandle, spec: SessionSpec) -> str:
        return sandbox_workdir(spec.workdir)

    def _save(self, handle: SandboxHandle) -> None:
        with private_file(self.sandbox_dir(handle) / "sandbox.json"):
            pass  # created 0600: it holds the key, and later saves keep the mode
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
        self._procs.pop(sandbox_id, None)
        helper = self._helpers.pop(sandbox_id, None)
        if helper is not None:
            await net.stop_helper(helper)  # slirp4netns exits once its sandbox has
        await self._cgroups.remove(sandbox_id)
        (self._socket_dir / f"{sandbox_id}.sock").unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, self._socket_dir / sandbox_id, True)  # sandboxes started by older versions
        await asyncio.to_thread(shutil.rmtree, self._root / sandbox_id, True)

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
        """Forget the sandboxes (they live on) and remove this backend's directory if none is left in it."""
        self._procs.clear()
        self._helpers.clear()  # slirp4netns lives on with its sandbox
        for path in (self._root, self._root.parent):
            if path == self._top:
                break
            try:
                path.rmdir()
            except OSError:
                break  # a sandbox (or another deployment's worker) still has files here

    # ---------------------------------------------------------- command line
    def _namespace_args(self) -> list[str]:
        env = [arg for name, value in SANDBOX_ENV.items() for arg in ("--setenv", name, value)]
        return ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                "--gid", str(SANDBOX_UID), "--hostname", HOSTNAME, "--new-session", "--cap-drop", "ALL",
                "--clearenv", *env]

    def _root_args(self, python: ExecutorPython, runtime: Path) -> list[str]:
        """The read-only root, /etc, the executor's Python and runtime: the same for every sandbox. Blocking."""
        root = self._config.rootfs or "/"
        python_tops = {p.split("/")[1] for p in python.binds}
        # /proc, /dev and the private /tmp first: binds made after them (an interpreter that lives
        # under /tmp, e.g. a CI checkout's) show through instead of being hidden.
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
        for path in python.binds:
            if not any(path == b or path.startswith(b + "/") for b in bound):
                args += ["--ro-bind", path, path]
                bound.append(path)
        args += ["--ro-bind", str(runtime), RUNTIME_MOUNT]
        etc_dir = runtime / "etc"
        if root == "/":
            args += [a for name in HOST_ETC if os.path.exists(f"/etc/{name}") for a in ("--ro-bind", f"/etc/{name}", f"/etc/{name}")]
            args += [a for name in SYNTHETIC_ETC for a in ("--ro-bind", str(etc_dir / name), f"/etc/{name}")]
        else:
            args += ["--ro-bind", os.path.join(root, "etc"), "/etc"]
            args += [a for name in SYNTHETIC_ETC if _plain_file(os.path.join(root, "etc", name))
                     for a in ("--ro-bind", str(etc_dir / name), f"/etc/{name}")]
        return args

    def _sandbox_args(self, spawn: "_Spawn") -> list[str]:
        args = ["--bind", str(spawn.sandbox_dir / "workspace"), WORKSPACE,
                "--bind", str(spawn.sandbox_dir / "outputs"), OUTPUTS]
        if spawn.network == "egress":
            resolv = os.path.join(self._config.rootfs or "/", "etc", "resolv.conf")
            if self._config.rootfs is None or _plain_file(resolv):
                args += ["--ro-bind", str(spawn.runtime / "etc" / "resolv.conf"), "/etc/resolv.conf"]
        args += [a for m in spawn.mounts for a in ("--ro-bind" if m.read_only else "--bind", m.source, m.target)]
        return args + ["--remount-ro", "/", "--chdir", WORKSPACE]


class _Spawn(msgspec.Struct, frozen=True, kw_only=True):
    """What one sandbox start needs beyond the backend's own state."""

    sandbox_id: str
    sandbox_dir: Path
    network: str
    config: dict[str, object]
    cgroups: list[Path]
    mounts: list[Mount]
    listen_fd: int
    runtime: Path


class _Ready(msgspec.Struct, frozen=True, kw_only=True):
    """One executor runtime and the bwrap command line its sandboxes share."""

    args: list[str]
    runtime: Path


def _seccomp_program() -> bytes | None:
    """The sandboxes' seccomp filter; a root worker refuses to run without one."""
    try:
        return compile_filter()
    except BackendError as exc:
        if os.geteuid() == 0:
            raise BackendError(f"{exc}; a root worker does not start sandboxes without their seccomp filter") from exc
        log.warning("bubblewrap_seccomp_unavailable", error=str(exc), detail="sandboxes run without a seccomp filter")
        return None


def _plain_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


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
