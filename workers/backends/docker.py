"""The Docker backend: one hardened container per sandbox, driven through the engine API (aiodocker).

The executor's Unix socket lives in a per-sandbox host directory bind-mounted at /run/corral, so
a sandbox needs no network at all (``NetworkMode: none``) unless its session asks for egress.
With ``transport="tcp"`` the executor listens on TCP instead: published on 127.0.0.1 at a port from
the host's PortAllocator when the sandbox has egress, else reached at its address on an internal
network that has neither egress nor inter-container traffic.

Readiness is the executor's own ready line, read from the container's log stream; the stream
ending first means the container exited, and its output goes into the error.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import shutil
import time
from typing import Any, AsyncIterator, Callable

import aiodocker
from aiodocker.exceptions import DockerError
from aiodocker.volumes import DockerVolume
import msgspec
import structlog

from executor.client import ExecutorClient, PeerCheck, PeerCred, same_pid_namespace
from protocol import SessionSpec, codes, new_id

from .._ports import PortAllocator, PortsExhausted
from ._base import (
    Backend,
    BackendError,
    SandboxHandle,
    claim_executor,
    deployment_id,
    load_handle,
    load_handles,
    save_handle,
)
from ._docker_spec import (
    EXEC_PORT,
    INTERNAL_NETWORK,
    LABEL_DEPLOYMENT,
    LABEL_DIR,
    LABEL_SANDBOX,
    LABEL_SESSION,
    LABEL_VERSION,
    LABEL_WORKER,
    SOCKET_NAME,
    VERSION,
    WORKSPACE,
    DockerConfig,
    Limits,
    container_body,
    executor_config,
    resolve_limits,
)
from ._fence import fence_as_root
from ._plugins import require_variants

log = structlog.get_logger()

BUILD_HINT = "build it with `corral image build`"
ENGINE_TIMEOUT_S = 10.0


class ImageNotFound(BackendError):
    """The sandbox image is not in the engine (corral never pulls)."""

    def __init__(self, image: str) -> None:
        super().__init__(f"image {image!r} is not in the Docker engine; {_build_hint(image)}")
        self.image = image


def _build_hint(image: str) -> str:
    try:
        from images import build_command
    except ImportError:
        return BUILD_HINT
    return f"make it with: {build_command(image)}"


class _StartTimeout(Exception):
    pass


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, *, base_dir: str, worker_id: str, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig()
        self._worker_id = worker_id
        self._deployment = deployment_id(base_dir)
        self._root = Path(base_dir) / "docker" / worker_id
        self._socket_root = Path(self.config.socket_dir or f"/tmp/corral-{os.getuid()}")
        self._docker: aiodocker.Docker | None = None
        self._engine_lock = asyncio.Lock()
        self._image_locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._runtime_images: dict[tuple[str, ...], str] = {}
        """Runtime image tags by variant set (() is the default image), each ensured once."""
        self._engine_cpus: float | None = None
        self._engine_runtimes: frozenset[str] = frozenset()
        self._engine_memory_mb: int | None = None
        self._ports: PortAllocator | None = None
        self._owned: set[str] = set()
        self._progress: Callable[[str], None] | None = None
        """Sandboxes this instance started and has not destroyed (sweep spares them)."""

    # ------------------------------------------------------------------ engine
    async def engine(self) -> aiodocker.Docker:
        """The engine client, connected and checked on first use."""
        if self._docker is not None:
            return self._docker
        async with self._engine_lock:
            if self._docker is None:
                self._docker = await self._connect()
        return self._docker

    async def _connect(self) -> aiodocker.Docker:
        where = self.config.docker_url or os.environ.get("DOCKER_HOST") or "the local engine socket"
        hint = f"cannot reach the Docker engine at {where}: is dockerd running, and DOCKER_HOST right?"
        try:
            docker = aiodocker.Docker(url=self.config.docker_url)
        except (ValueError, OSError) as exc:
            raise BackendError(f"{hint} ({exc})") from exc
        try:
            async with asyncio.timeout(ENGINE_TIMEOUT_S):
                info = await docker.system.info()
        except (DockerError, OSError, TimeoutError) as exc:
            await docker.close()
            raise BackendError(f"{hint} ({exc})") from exc
        self._engine_runtimes = frozenset(info.get("Runtimes") or {})
        self._engine_cpus = float(info.get("NCPU") or 0) or None
        self._engine_memory_mb = int(info.get("MemTotal") or 0) // (1024 * 1024) or None
        self._root.mkdir(parents=True, exist_ok=True)
        self._socket_root.mkdir(mode=0o711, exist_ok=True)
        return docker

    def limits(self, spec: SessionSpec) -> Limits:
        return resolve_limits(spec, self.config, engine_cpus=self._engine_cpus, engine_memory_mb=self._engine_memory_mb,
                              engine_runtimes=self._engine_runtimes)

    def validate(self, spec: SessionSpec) -> None:
        super().validate(msgspec.structs.replace(spec, isolation=None))  # isolation is ours to judge
        limits = self.limits(spec)
        if limits.network == "egress" and self.config.fence_egress and os.geteuid() != 0:
            raise BackendError("network='egress' is fenced off the host with routes only a root worker can install; "
                               "run the worker as root or set the docker backend's fence_egress=false", "invalid_spec")

    def pool_key(self, spec: SessionSpec) -> str | None:
        try:
            return self.limits(spec).pool_key()
        except BackendError:
            return None  # never pooled: the cold start reports why

    async def _image(self, limits: Limits) -> str:
        """The image named by the session or the config (which must have the plugins' variants),
        else the runtime image with those variants, built on first need."""
        if limits.image:
            if limits.variants:
                await self._check_variants(limits.image, limits.variants)
            return limits.image
        variants = limits.variants
        if (tag := self._runtime_images.get(variants)) is not None:
            return tag
        async with self._image_locks.setdefault(variants, asyncio.Lock()):  # one build per variant set
            if variants not in self._runtime_images:
                self._runtime_images[variants] = await self._ensure_runtime_image(variants)
        return self._runtime_images[variants]

    async def _check_variants(self, image: str, variants: tuple[str, ...]) -> None:
        try:
            from images import ImageError, image_variants
        except ImportError:  # without the builder the label cannot be read: the executor reports it
            return
        try:
            has = await image_variants(await self.engine(), image)
        except ImageError as exc:
            raise BackendError(f"cannot inspect image {image!r}: {exc}") from exc
        if has is None:
            raise ImageNotFound(image)
        require_variants(image, has, variants)

    async def _ensure_runtime_image(self, variants: tuple[str, ...] = ()) -> str:
        """The runtime image for this uid and these variants, built (its progress logged) when missing."""
        try:
            import images
        except ImportError as exc:
            raise BackendError(f"no sandbox image configured and the image builder is unavailable ({exc}); "
                               f"set the docker backend's image, or {BUILD_HINT}") from exc
        docker = await self.engine()

        def progress(report: Any) -> None:
            log.info("runtime_image_progress", stage=report.stage, message=report.message, worker_id=self._worker_id,
                     variants=",".join(variants))
            if self._progress is not None:
                self._progress(f"[{report.stage}] {report.message}")

        try:
            return await images.ensure_runtime_image(docker, uid=self.config.uid, gid=self.config.gid,
                                                     variants=variants, progress=progress)
        except (images.UnknownVariant, images.VariantUnavailable) as exc:
            raise BackendError(f"no runtime image for the session's plugins: {exc}", codes.PLUGIN_UNAVAILABLE) from exc
        except images.ImageError as exc:
            raise BackendError(f"cannot get the runtime image: {exc}") from exc

    async def prepare(self, progress: Callable[[str], None] | None = None) -> None:
        """Reach the engine and make sure the default image exists (building it, with progress, if not)."""
        self._progress = progress
        try:
            image = await self._image(self.limits(SessionSpec()))
        finally:
            self._progress = None
        try:
            await (await self.engine()).images.inspect(image)
        except DockerError as exc:
            if exc.status == 404:
                raise ImageNotFound(image) from None
            raise BackendError(f"cannot inspect image {image!r}: {exc}") from exc

    # ------------------------------------------------------------- lifecycle
    async def create(self, session_id: str, spec: SessionSpec) -> SandboxHandle:
        handle = await self._start(spec, session_id)
        try:
            return await self.claim(handle, session_id, spec)
        except BaseException:
            await asyncio.shield(self.destroy(handle))
            raise

    async def prestart(self, spec: SessionSpec) -> SandboxHandle:
        return await self._start(spec, "")

    async def _start(self, spec: SessionSpec, session_id: str) -> SandboxHandle:
        """Start a container whose executor answers; a start past the deadline is removed and retried once."""
        docker = await self.engine()
        limits = self.limits(spec)
        image = await self._image(limits)
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                handle = await self._start_once(docker, image, limits, session_id)
            except _StartTimeout:
                log.warning("docker_start_timeout", worker_id=self._worker_id, attempt=attempt,
                            timeout_s=self.config.start_timeout_s)
                continue
            log.info("docker_sandbox_started", sandbox_id=handle.sandbox_id, session_id=session_id or None,
                     worker_id=self._worker_id, start_ms=round((time.perf_counter() - started) * 1000, 1))
            return handle
        raise BackendError(f"the sandbox did not start within {self.config.start_timeout_s} s (tried twice)")

    async def _start_once(self, docker: aiodocker.Docker, image: str, limits: Limits, session_id: str) -> SandboxHandle:
        sandbox_id = "d" + new_id()
        key = new_id()
        handle = SandboxHandle(sandbox_id=sandbox_id, session_id=session_id, worker_id=self._worker_id,
                               backend=self.name, key=key, workdir=WORKSPACE, created_at=time.time())
        self._owned.add(sandbox_id)
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                handle = await self._launch(docker, image, limits, handle)
                handle = await self._wait_ready(docker, handle)
                if limits.network == "egress" and self.config.fence_egress:
                    await self._fence(docker, handle)
        except TimeoutError:
            await asyncio.shield(self.destroy(handle))
            raise _StartTimeout() from None
        except BaseException:
            await asyncio.shield(self.destroy(handle))
            raise
        self._save(handle)
        return handle

    async def _fence(self, docker: aiodocker.Docker, handle: SandboxHandle) -> None:
        """Egress reaches past the host, never the host itself (its services, the broker)."""
        spare: tuple[str, ...] = ()
        if self.config.transport == "tcp":  # the published port's replies go to the bridge's gateway
            info = await docker.containers.container(handle.container_id or "").show()
            spare = tuple(n.get("Gateway", "") for n in info["NetworkSettings"]["Networks"].values())
        fenced = await fence_as_root(handle.pid or 0, self.config.egress_deny, spare=spare)
        log.info("docker_egress_fenced", sandbox_id=handle.sandbox_id, routes=len(fenced))

    async def _launch(self, docker: aiodocker.Docker, image: str, limits: Limits, handle: SandboxHandle) -> SandboxHandle:
        sid = handle.sandbox_id
        sandbox_dir = self._root / sid
        socket_dir = self._socket_root / sid if self.config.transport == "unix" else None
        workspace = f"corral-ws-{sid}" if self.config.workspace == "volume" else str(sandbox_dir / "workspace")
        await asyncio.to_thread(self._make_dirs, sandbox_dir, socket_dir)
        host_port = None
        if self.config.transport == "tcp" and limits.network == "egress":
            host_port = self._allocate_port()
        elif self.config.transport == "tcp":
            await self._ensure_internal_network(docker)
        labels = {LABEL_SANDBOX: sid, LABEL_SESSION: handle.session_id, LABEL_WORKER: self._worker_id,
                  LABEL_DEPLOYMENT: self._deployment,
                  LABEL_VERSION: VERSION, LABEL_DIR: str(sandbox_dir)}
        body = container_body(image=image, limits=limits, config=self.config, labels=labels,
                              executor_json=json.dumps(executor_config(handle.key, self.config.transport)),
                              socket_dir=str(socket_dir) if socket_dir else None, workspace_source=workspace,
                              host_port=host_port)
        handle = msgspec.structs.replace(handle, socket_path=str(socket_dir / SOCKET_NAME) if socket_dir else None,
                                         port=host_port)
        # Written before the container exists: a worker that dies during the start leaves a trace
        # the sweeper finds, instead of a container nobody knows about.
        await asyncio.to_thread(self._save, handle)
        try:
            container = await docker.containers.create(body, name=f"corral-{sid}")
        except DockerError as exc:
            if exc.status == 404 and "image" in exc.message.lower():
                raise ImageNotFound(image) from exc
            raise BackendError(f"the engine refused the sandbox container: {exc.message}") from exc
        handle = msgspec.structs.replace(handle, container_id=container.id)
        try:
            await container.start()
        except DockerError as exc:
            raise BackendError(f"the sandbox container did not start: {exc.message}") from exc
        return handle

    def _make_dirs(self, sandbox_dir: Path, socket_dir: Path | None) -> None:
        sandbox_dir.mkdir(parents=True)
        dirs = [sandbox_dir / "workspace"] if self.config.workspace == "bind" else []
        if socket_dir is not None:
            dirs.append(socket_dir)
        for path in dirs:
            path.mkdir(mode=0o700)
            # The sandbox user owns its workspace and socket dir, so files keep those ids on the host.
            if os.getuid() == 0 or os.getuid() == self.config.uid:
                os.chown(path, self.config.uid, self.config.gid)
            else:
                path.chmod(0o777)

    def _allocate_port(self) -> int:
        if self._ports is None:
            self._ports = PortAllocator(self.config.port_lock_dir)
        try:
            return self._ports.allocate("exec")
        except PortsExhausted as exc:
            raise BackendError(f"no host port for the sandbox: {exc}") from exc

    async def _ensure_internal_network(self, docker: aiodocker.Docker) -> None:
        try:
            await docker.networks.get(INTERNAL_NETWORK)
            return
        except DockerError as exc:
            if exc.status != 404:
                raise BackendError(f"cannot inspect network {INTERNAL_NETWORK}: {exc.message}") from exc
        try:
            await docker.networks.create({
                "Name": INTERNAL_NETWORK, "Driver": "bridge", "Internal": True, "CheckDuplicate": True,
                "Options": {"com.docker.network.bridge.enable_icc": "false"},
                "Labels": {LABEL_VERSION: VERSION},
            })
        except DockerError as exc:
            if exc.status != 409:  # created concurrently by another start
                raise BackendError(f"cannot create network {INTERNAL_NETWORK}: {exc.message}") from exc

    async def _wait_ready(self, docker: aiodocker.Docker, handle: SandboxHandle) -> SandboxHandle:
        """Read the executor's ready line from the container's stdout; EOF first means it exited."""
        assert handle.container_id is not None
        container = docker.containers.container(handle.container_id)
        buffer = ""
        async for piece in _follow_stdout(container):
            buffer += piece
            line, newline, _ = buffer.partition("\n")
            if newline:
                try:
                    json.loads(line)["ready"]
                except (ValueError, KeyError, TypeError):
                    raise BackendError(f"the executor printed {line[:200]!r} instead of its ready line") from None
                break
        else:
            raise BackendError(f"the sandbox exited before its executor was ready: {await self._exit_report(container)}")
        info = await container.show()
        # The container's init, on the host: the executor's socket must belong to its pid namespace.
        handle = msgspec.structs.replace(handle, pid=int(info["State"].get("Pid") or 0) or None)
        if self.config.transport == "tcp" and handle.port is None:
            address = info["NetworkSettings"]["Networks"][INTERNAL_NETWORK]["IPAddress"]
            handle = msgspec.structs.replace(handle, host=address, port=EXEC_PORT)
        return handle

    def client(self, handle: SandboxHandle) -> ExecutorClient:
        """Over the Unix socket, only a listener inside the container's pid namespace (or, when the
        worker cannot see it, running as the sandbox uid) is talked to: whatever the sandbox puts
        at the socket path, the worker never speaks to the engine or another host service."""
        if handle.socket_path is None:
            return super().client(handle)
        if handle.pid is None:  # a handle from before the pid was recorded: the uid is what is left
            check = _uid_only(self.config.uid)
        else:
            check = same_pid_namespace(handle.pid, uid=self.config.uid)
        return ExecutorClient(key=handle.key, socket_path=handle.socket_path, peer_check=check)

    async def _exit_report(self, container: Any) -> str:
        try:
            info = await container.show()
            lines = await container.log(stdout=True, stderr=True, tail=20)
        except DockerError as exc:
            return f"(cannot inspect it: {exc.message})"
        state = info["State"]
        return f"exit code {state.get('ExitCode')}, output: {''.join(lines)[-800:]!r}"

    async def claim(self, handle: SandboxHandle, session_id: str, spec: SessionSpec) -> SandboxHandle:
        self.limits(spec)  # validates workdir and the rest before the sandbox is bound
        claimed = await claim_executor(self.client(handle), handle, session_id, spec, spec.workdir or WORKSPACE)
        await asyncio.to_thread(self._save, claimed)
        return claimed

    def _save(self, handle: SandboxHandle) -> None:
        save_handle(self._root / handle.sandbox_id, handle)

    can_keep = True

    async def images_present(self) -> list[str]:
        docker = await self.engine()
        try:
            found = await docker.images.list()
        except DockerError:
            return []
        return sorted({tag for image in found for tag in (image.get("RepoTags") or []) if tag != "<none>:<none>"})

    async def keep(self, handle: SandboxHandle) -> None:
        """Stop the container and leave it, its workspace and its logs for `docker start`/inspection."""
        docker = await self.engine()
        try:
            await docker.containers.container(handle.container_id or f"corral-{handle.sandbox_id}").stop(t=3)
        except DockerError as exc:
            if exc.status != 404:
                raise BackendError(f"cannot stop container for keeping: {exc.message}") from exc
        if self._ports is not None and handle.port is not None and handle.host == "127.0.0.1":
            self._ports.release(handle.port)
        self._owned.discard(handle.sandbox_id)

    async def destroy(self, handle: SandboxHandle) -> None:
        docker = await self.engine()
        ref = handle.container_id or f"corral-{handle.sandbox_id}"
        try:
            await docker.containers.container(ref).delete(force=True, v=True)
        except DockerError as exc:
            if exc.status != 404:
                log.warning("docker_remove_failed", sandbox_id=handle.sandbox_id, error=exc.message)
        if self.config.workspace == "volume":
            try:
                await DockerVolume(docker, f"corral-ws-{handle.sandbox_id}").delete(force=True)
            except DockerError:
                pass
        if self._ports is not None and handle.port is not None and handle.host == "127.0.0.1":
            self._ports.release(handle.port)
        self._owned.discard(handle.sandbox_id)
        await asyncio.to_thread(self._remove_dirs, handle.sandbox_id)

    def _remove_dirs(self, sandbox_id: str) -> None:
        shutil.rmtree(self._root / sandbox_id, ignore_errors=True)
        shutil.rmtree(self._socket_root / sandbox_id, ignore_errors=True)

    # ------------------------------------------------------------ inspection
    async def _containers(self) -> list[dict[str, Any]]:
        """Summaries of this worker's corral containers, running or not."""
        docker = await self.engine()
        filters = json.dumps({"label": [f"{LABEL_WORKER}={self._worker_id}", f"{LABEL_DEPLOYMENT}={self._deployment}",
                                         LABEL_SANDBOX]})
        try:
            return [c._container for c in await docker.containers.list(all=True, filters=filters)]
        except DockerError as exc:
            raise BackendError(f"cannot list containers: {exc.message}") from exc

    def _load(self, summary: dict[str, Any]) -> SandboxHandle | None:
        labels = summary.get("Labels") or {}
        return load_handle(Path(labels.get(LABEL_DIR) or self._root / labels.get(LABEL_SANDBOX, "?")))

    async def list(self) -> list[SandboxHandle]:
        handles = []
        for summary in await self._containers():
            handle = await asyncio.to_thread(self._load, summary)
            # An adopted sandbox's published port needs no re-locking: its proxy holds the port, and
            # PortAllocator skips ports it cannot bind.
            if handle is not None and summary.get("State") in ("running", "paused"):
                handles.append(handle)
        return handles

    async def inventory(self) -> list[SandboxHandle]:
        """Every container of this worker and deployment in any state (running, paused, exited,
        created), and every handle directory whose container never came to be or is gone."""
        found: dict[str, SandboxHandle] = {}
        for summary in await self._containers():
            handle = await asyncio.to_thread(self._load, summary) or self._from_labels(summary)
            found[handle.sandbox_id] = handle
        for handle in await asyncio.to_thread(load_handles, self._root):
            found.setdefault(handle.sandbox_id, handle)
        return list(found.values())

    def _from_labels(self, summary: dict[str, Any]) -> SandboxHandle:
        """A handle for a container whose handle file is gone: enough to remove it."""
        labels = summary.get("Labels") or {}
        return SandboxHandle(sandbox_id=labels.get(LABEL_SANDBOX, ""), session_id=labels.get(LABEL_SESSION, ""),
                             worker_id=self._worker_id, backend=self.name, key="", container_id=summary.get("Id"),
                             created_at=float(summary.get("Created") or 0))

    async def sweep(self, known_session_ids: set[str] | frozenset[str]) -> list[str]:
        """Remove this worker's containers whose session is unknown (orphans); returns their sandbox ids."""
        removed = []
        for summary in await self._containers():
            labels = summary.get("Labels") or {}
            sandbox_id = labels.get(LABEL_SANDBOX, "")
            if sandbox_id in self._owned:
                continue
            handle = await asyncio.to_thread(self._load, summary)
            session_id = handle.session_id if handle is not None else labels.get(LABEL_SESSION, "")
            if session_id and session_id in known_session_ids:
                continue
            await self.destroy(handle or SandboxHandle(sandbox_id=sandbox_id, session_id=session_id,
                                                       worker_id=self._worker_id, backend=self.name, key="",
                                                       container_id=summary.get("Id")))
            log.info("docker_orphan_removed", sandbox_id=sandbox_id, session_id=session_id or None,
                     worker_id=self._worker_id)
            removed.append(sandbox_id)
        return removed

    async def alive(self, handle: SandboxHandle) -> str | None:
        state = await self.state(handle)
        if state is None:
            return "container removed"
        if state.get("Running"):
            return None
        reason = f"container {state.get('Status', 'stopped')} with exit code {state.get('ExitCode')}"
        if state.get("OOMKilled"):
            reason += " (OOMKilled: the sandbox ran out of memory)"
        if state.get("Error"):
            reason += f": {state['Error']}"
        return reason

    async def state(self, handle: SandboxHandle) -> dict[str, Any] | None:
        """The container's engine ``State`` (Running, Paused, OOMKilled, ExitCode...); None once removed."""
        docker = await self.engine()
        try:
            info = await docker.containers.container(handle.container_id or f"corral-{handle.sandbox_id}").show()
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise BackendError(f"cannot inspect the sandbox container: {exc.message}") from exc
        return info["State"]

    # ---------------------------------------------------------- freeze/thaw
    async def pause(self, handle: SandboxHandle) -> None:
        """Freeze every process of the sandbox (cgroup freezer); actions wait until ``resume``."""
        await self._container_call(handle, "pause")

    async def resume(self, handle: SandboxHandle) -> None:
        await self._container_call(handle, "unpause")

    async def _container_call(self, handle: SandboxHandle, verb: str) -> None:
        docker = await self.engine()
        container = docker.containers.container(handle.container_id or f"corral-{handle.sandbox_id}")
        try:
            await getattr(container, verb)()
        except DockerError as exc:
            code = codes.SANDBOX_DIED if exc.status == 404 else codes.SANDBOX_FAILED
            raise BackendError(f"cannot {verb} the sandbox: {exc.message}", code) from exc

    async def aclose(self) -> None:
        if self._ports is not None:
            self._ports.close()
            self._ports = None
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()


async def _follow_stdout(container: Any) -> AsyncIterator[str]:
    """The container's stdout from its start, as it comes; ends when the container exits."""
    try:
        async for piece in container.log(stdout=True, follow=True):
            yield piece
    except DockerError as exc:
        raise BackendError(f"cannot read the sandbox's output: {exc.message}") from exc


def _uid_only(uid: int) -> PeerCheck:
    def check(peer: PeerCred) -> str | None:
        return None if peer.uid == uid else f"the socket's listener runs as uid {peer.uid}, not the sandbox's {uid}"
    return check
