"""The runtime worker: owns sandboxes through one backend and serves their sessions.

Listens on ``corral.worker.<wid>.create|close|pause|resume|drain|expose|unexpose|vscode``, runs one
SessionRunner per session, forwards ports into sandboxes (``_forward``), keeps a warm pool,
re-adopts its sandboxes after a restart, sweeps orphans, watches sandbox liveness, and heartbeats
its capacity and load (subject + KV ``corral_workers``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Callable

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
import nats.js.errors
import structlog

from actors import (
    StreamConfigOptions,
    Supervisor,
    answer_unanswered,
    cancel_and_wait,
    ensure_stream,
    kv_delete,
    load_sessions,
    metrics,
    sessions_bucket,
    stream_name,
    workers_bucket,
)
from actors.mcp import MCPConfig
from actors.secrets import live_secrets
from executor.plugins import resolve
from protocol import (
    ErrorReply,
    SandboxCreate,
    SessionInfo,
    SessionRef,
    SessionSpec,
    Subjects,
    UnknownName,
    WorkerInfo,
    WorkerRef,
    codes,
    connect_nats,
    decode_as,
    encode,
    spec_problem,
    unsubscribe_all,
)

from ._forward import PortForwards
from ._pool import WarmPool
from ._port_verbs import port_verb, reopen
from ._ports import RANGES, PortAllocator
from ._vscode_verb import VscodeVerb
from .backends import (
    AnyBackendConfig,
    Backend,
    BackendError,
    SandboxHandle,
    backend_config,
    backend_name,
    deployment_id,
    make_backend,
)
from .security import Security, SecurityConfig
from .session import ExecutorHandler, RunnerConfig, SessionRunner

log = structlog.get_logger()

VERSION = "0.1.0"
IMAGES_EVERY_BEATS = 15
"""Refresh the list of images present every this many heartbeats (30 s by default)."""


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "corral"
    creds: str | None = None
    """A credentials file to log in with (``corral up --secure`` gives the worker's)."""
    worker_id: str | None = None
    """Stable across restarts on one host; default ``<hostname>-<backend>-<deployment>``, where the
    deployment is a hash of ``base_dir`` (two deployments on one host never share a worker id)."""
    backend: str | AnyBackendConfig = "local"
    """A backend's name (with its defaults) or its config, e.g. ``{"name": "docker", "image": "..."}``."""
    capacity: int = 64
    base_dir: str = "/var/lib/corral"
    heartbeat_interval_s: float = 2.0
    max_concurrent_starts: int = 8
    warm_pool: int = 2
    """Prestarted sandboxes kept ready per pool key (0 disables the pool)."""
    warm_max: int | None = None
    """Warm sandboxes per worker over every pool key (default 4 × ``warm_pool``); they also count
    against ``capacity``."""
    ack_wait_s: float = 30.0
    runner: RunnerConfig = RunnerConfig()
    """Per-session limits: output quotas, the answer cache (``ack_wait_s`` and the stream's chunk
    TTL are taken from this config)."""
    sweep_interval_s: float = 60.0
    sweep_grace_s: float = 60.0
    """Sandboxes younger than this are never swept (they may be starting or being claimed)."""
    watch_interval_s: float = 5.0
    """How often every sandbox's liveness is checked with the backend."""
    labels: dict[str, str] = {}
    allowed_mounts: list[str] = []
    """Host directories sessions may mount (SessionSpec.mounts); nothing by default."""
    stream: StreamConfigOptions = StreamConfigOptions()
    mcp: MCPConfig = MCPConfig()
    """MCP servers every session of this worker has (``--mcp-config`` / ``CORRAL_MCP_CONFIG``)."""
    security: SecurityConfig = SecurityConfig()
    """The deployment's security analyzers, rules and policy (``--security-config``); sessions may
    only tighten them. On by default: the default rules, high risk held for a confirm."""
    public_host: str = "127.0.0.1"
    """Where forwarded ports (``expose``, VS Code) listen on the host; 0.0.0.0 opens them to the network."""
    advertise_host: str | None = None
    """The host name put in forwarded ports' URLs (default ``public_host``; the host name when that is 0.0.0.0)."""
    port_ranges: dict[str, tuple[int, int]] = {}
    """Override host port ranges by purpose (``apps``, ``vscode``), inclusive."""

    def resolved_worker_id(self) -> str:
        name = backend_name(backend_config(self.backend))
        return self.worker_id or f"{socket.gethostname()}-{name}-{deployment_id(self.base_dir)}".replace(".", "-")


class Worker:
    def __init__(self, config: WorkerConfig, backend: Backend | None = None) -> None:
        self._config = config
        self.worker_id = config.resolved_worker_id()
        self._subjects = Subjects(config.prefix)
        self._stream = stream_name(self._subjects)
        self._backend = backend or make_backend(config.backend, base_dir=config.base_dir, worker_id=self.worker_id,
                                                allowed_mounts=tuple(config.allowed_mounts))
        self._runners: dict[str, SessionRunner] = {}
        self._starting = 0
        self._start_slots = asyncio.Semaphore(config.max_concurrent_starts)
        self._pool = WarmPool(self._backend, config.warm_pool, self._start_slots, max_total=config.warm_max,
                              room=lambda: config.capacity - len(self._runners) - self._starting)
        self._supervisor = Supervisor(f"worker:{self.worker_id}")
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._nc: Nats | None = None
        self._draining = False
        self._images: list[str] = []
        self._security = Security(config.security)  # a config it cannot enforce stops the worker here
        gates = config.runner.gates
        if config.security.enabled and "security" not in gates:
            gates = ["security", *gates]
        self._runner_config = msgspec.structs.replace(config.runner, ack_wait_s=config.ack_wait_s,
                                                      chunk_ttl_s=config.stream.chunk_ttl_s, gates=gates)
        self._last_beat = time.time()
        self._services = {**_services(config.mcp), "security": self._security}
        advertise = config.advertise_host or (socket.gethostname() if config.public_host in ("0.0.0.0", "::") else None)
        self._forwards = PortForwards(PortAllocator(ranges={**RANGES, **config.port_ranges}, bind_host=config.public_host),
                                      bind_host=config.public_host, advertise_host=advertise)
        """Forwarded ports of every session (VS Code opens its forward here with ``runner.client``)."""
        self._vscode = VscodeVerb(self._forwards)

    @property
    def backend(self) -> Backend:
        return self._backend

    async def start(self, nc: Nats | None = None, *, progress: Callable[[str], None] | None = None) -> None:
        """Prepare the backend (a broken engine or a missing image fails here), then serve."""
        await self._backend.prepare(progress)
        self._images = await self._backend.images_present()
        self._nc = nc or await connect_nats(self._config.nats_url, name=f"corral-worker-{self.worker_id}",
                                            creds=self._config.creds)
        js = self._nc.jetstream()
        await ensure_stream(js, self._subjects, self._config.stream)
        self._kv = await workers_bucket(js, self._subjects)
        self._kv_sessions = await sessions_bucket(js, self._subjects)
        await self._adopt()
        self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, "create"), cb=self._spawn(self._on_create)))
        self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, "close"), cb=self._spawn(self._on_close)))
        self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, "drain"), cb=self._on_drain))
        for verb in ("pause", "resume"):
            self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, verb), cb=self._spawn(self._on_freeze)))
        for verb in ("expose", "unexpose"):
            self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, verb), cb=self._spawn(self._on_port)))
        self._subs.append(await self._nc.subscribe(self._subjects.worker(self.worker_id, "vscode"), cb=self._spawn(self._on_vscode)))
        await self._heartbeat()
        self._supervisor.start("heartbeat", self._heartbeat_forever)
        self._supervisor.start("sweeper", self._sweep_forever)
        self._supervisor.start("watchdog", self._watch_forever)
        self._pool.prime(self._sandbox_spec(SessionSpec()))
        await self._nc.flush()
        log.info("worker_started", worker_id=self.worker_id, backend=self._backend.name, capacity=self._config.capacity)

    async def _adopt(self) -> None:
        """After a restart: serve the sandboxes that are still running, remove the rest, and
        reconcile the registry: a session of this worker whose sandbox is gone becomes `lost`."""
        registry = await load_sessions(self._kv_sessions)
        for handle in await self._backend.inventory():
            record = registry.get(handle.session_id)
            mine = record is not None and record.info.worker_id == self.worker_id and record.info.status != "closed"
            dead = await self._backend.alive(handle)
            if dead is not None or not mine:
                log.info("sandbox_removed_at_start", sandbox_id=handle.sandbox_id, session_id=handle.session_id or None,
                         reason=dead or "no live session of this worker")
                await self._backend.destroy(handle)
                continue
            # The registry's record keeps the session's tenant: its runner serves the tenant's subjects again.
            runner = self._runner(handle, record.spec, record.info.tenant)  # type: ignore[union-attr]
            await runner.start(recover=True)
            self._runners[handle.session_id] = runner
            ports = await reopen(self._forwards, runner, record.info.ports)  # type: ignore[union-attr]
            await runner.publish_status(SessionInfo(
                session_id=handle.session_id, worker_id=self.worker_id, backend=self._backend.name,
                status="recovered", created_at=handle.created_at, labels=dict(handle.labels), ports=ports,
                tenant=runner.tenant))
            log.info("session_recovered", session_id=handle.session_id, sandbox_id=handle.sandbox_id)
        for sid, record in registry.items():
            if record.info.worker_id == self.worker_id and sid not in self._runners and record.info.status != "closed":
                await self._lose(record.info, "its sandbox was gone when worker "
                                              f"{self.worker_id} restarted")

    async def _lose(self, info: SessionInfo, reason: str) -> None:
        """A session with no sandbox any more: answer what it still holds, then report it `lost`."""
        assert self._nc is not None
        sid = info.session_id
        consumer = f"session_{sid}"
        js = self._nc.jetstream()
        try:
            found = await js.consumer_info(self._stream, consumer)
            since = (found.ack_floor.stream_seq if found.ack_floor else 0) + 1
            await js.delete_consumer(self._stream, consumer)
        except nats.js.errors.NotFoundError:
            since = 1
        subjects = self._subjects.for_tenant(info.tenant)
        answered = await answer_unanswered(self._nc, subjects, self._stream, sid, since=since,
                                           code=codes.SANDBOX_LOST, reason=f"session {sid} is lost: {reason}")
        lost = msgspec.structs.replace(info, status="lost", reason=reason)
        await self._nc.publish(subjects.status(sid), encode(lost))
        await kv_delete(self._kv_sessions, sid)
        log.warning("session_lost_at_start", session_id=sid, reason=reason, pending_answered=answered)

    def _runner(self, handle: SandboxHandle, spec: SessionSpec, tenant: str = "") -> SessionRunner:
        """A tenant's session is served on the tenant's subjects: its consumer, observations,
        status and lookup are under ``<prefix>.t.<tenant>``."""
        assert self._nc is not None
        return SessionRunner(self._nc, self._subjects.for_tenant(tenant), self._stream, handle, spec=spec, client=self._backend.client(handle),
                             config=self._runner_config, on_dead=self._sandbox_died,
                             death_reason=lambda: self._backend.alive(handle), services=self._services)

    async def _watch_forever(self) -> None:
        """Notice sandboxes that died (OOM, killed, removed behind our back) even when no action runs."""
        while True:
            await asyncio.sleep(self._config.watch_interval_s)
            await self.watch_once()

    async def watch_once(self) -> list[str]:
        dead = []
        for sid, runner in list(self._runners.items()):
            reason = await self._backend.alive(runner.handle)
            if reason is not None and sid in self._runners:
                dead.append(sid)
                await self._on_sandbox_dead(sid, reason)
        return dead

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_interval_s)
            await self.sweep_once()

    async def sweep_once(self) -> int:
        """Remove sandboxes of this worker that no session or warm pool owns, in any state
        (running, exited, created but never started); returns how many."""
        young = time.time() - self._config.sweep_grace_s
        await self._close_unregistered(young)
        owned = {r.handle.sandbox_id for r in self._runners.values()} | self._pool.sandbox_ids()
        removed = 0
        # A sandbox being started or claimed right now is not owned yet: leave young ones alone.
        for handle in await self._backend.inventory():
            if handle.sandbox_id not in owned and handle.created_at < young:
                log.warning("sandbox_orphan_removed", sandbox_id=handle.sandbox_id, session_id=handle.session_id or None)
                await self._backend.destroy(handle)
                removed += 1
        return removed

    async def _close_unregistered(self, older_than: float) -> None:
        """A session the registry does not give to this worker (a create the controller gave up on
        while this worker was silent) is closed, not served forever."""
        if not self._runners:
            return
        registry = await load_sessions(self._kv_sessions)
        for sid, runner in list(self._runners.items()):
            record = registry.get(sid)
            if runner.handle.created_at < older_than and (record is None or record.info.worker_id != self.worker_id):
                log.warning("session_unregistered_closed", session_id=sid)
                await self.close_session(sid, reason="the registry does not place this session on this worker")

    def _spawn(self, handler: Any) -> Any:
        """NATS callbacks run one at a time: long handlers go to their own task."""
        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception as exc:  # a bad request or a bug: answered, and the worker lives on
                log.exception("worker_request_failed", subject=msg.subject)
                await self._reply(msg, ErrorReply(code=codes.INTERNAL, message=f"worker failed on {msg.subject}: {exc!r}"))

        async def cb(msg: Msg) -> None:
            task = asyncio.create_task(guarded(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return cb

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id, backend=self._backend.name, capacity=self._config.capacity,
            running=len(self._runners), starting=self._starting, host=socket.gethostname(), version=VERSION,
            warm=sum(self._pool.statistics().values()), draining=self._draining, images=self._images,
            labels=dict(self._config.labels), seen_at=time.time(),
            active=[sid for sid, r in self._runners.items() if r.busy(self._last_beat)],
        )

    async def _heartbeat(self) -> None:
        assert self._nc is not None
        info = self.info()
        metrics.sessions.labels("worker", "running").set(info.running)
        metrics.sessions.labels("worker", "starting").set(info.starting)
        metrics.warm_pool.labels(self.worker_id).set(info.warm)
        data = encode(info)
        self._last_beat = info.seen_at
        await self._nc.publish(self._subjects.worker(self.worker_id, "heartbeat"), data)
        await self._kv.put(self.worker_id, data)

    async def _heartbeat_forever(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._config.heartbeat_interval_s)
            if beats % IMAGES_EVERY_BEATS == 0:
                self._images = await self._backend.images_present()
            beats += 1
            await self._heartbeat()

    # ------------------------------------------------------------------ create
    async def _on_create(self, msg: Msg) -> None:
        try:
            request = decode_as(msg.data, SandboxCreate)
        except msgspec.DecodeError as exc:
            return await self._reply(msg, ErrorReply(code=codes.BAD_PAYLOAD, message=f"bad create request: {exc}"))
        problem = (spec_problem(request.spec) or _plugins_problem(request.spec)
                   or _mcp_problem(self._config.mcp, request.spec) or self._security.spec_problem(request.spec.security))
        if problem:
            return await self._reply(msg, ErrorReply(code=codes.INVALID_SPEC, message=problem))
        if self._draining:
            return await self._reply(msg, ErrorReply(code=codes.WORKER_DRAINING, message=f"worker {self.worker_id} is draining"))
        if len(self._runners) + self._starting >= self._config.capacity:
            return await self._reply(msg, ErrorReply(code=codes.WORKER_FULL, message=f"worker {self.worker_id} is full"))
        self._starting += 1
        try:
            info = await self.create_session(request)
        finally:
            self._starting -= 1
        await self._reply(msg, info)
        self._pool.prime(self._sandbox_spec(request.spec))  # refill only now: a sandbox start must not slow the claim
        await self._heartbeat()

    async def create_session(self, request: SandboxCreate) -> SessionInfo | ErrorReply:
        with live_secrets.holding(request.spec.secrets):  # logs mask them from the start; the runner keeps them on
            return await self._create_session(request)

    async def _create_session(self, request: SandboxCreate) -> SessionInfo | ErrorReply:
        sid = request.session_id
        assert self._nc is not None
        started = time.perf_counter()
        try:
            handle, warm = await self._sandbox_for(sid, self._sandbox_spec(request.spec))
        except BackendError as exc:
            metrics.failures.labels("worker", exc.code).inc()
            log.warning("sandbox_create_failed", session_id=sid, error=str(exc))
            return ErrorReply(code=exc.code, message=str(exc))
        runner = self._runner(handle, request.spec, request.tenant)
        try:
            await runner.start()
        except nats.errors.Error as exc:
            await self._backend.destroy(handle)
            return ErrorReply(code=codes.SANDBOX_FAILED, message=f"cannot subscribe the session's actions: {exc!r}")
        self._runners[sid] = runner
        info = SessionInfo(session_id=sid, worker_id=self.worker_id, backend=self._backend.name, status="ready",
                           created_at=handle.created_at, labels=dict(request.spec.labels), warm=warm,
                           plugins=ExecutorHandler.statuses(request.spec), tenant=request.tenant)
        await runner.publish_status(info)
        metrics.create_seconds.labels(str(warm).lower()).observe(time.perf_counter() - started)
        log.info("session_ready", session_id=sid, worker_id=self.worker_id, warm=warm,
                 start_ms=round((time.perf_counter() - started) * 1000, 1))
        return info

    def _sandbox_spec(self, spec: SessionSpec) -> SessionSpec:
        """The spec the backend sees: with this worker's own stdio MCP servers added, so a backend
        gives the sandbox what runs them (bubblewrap's runtime copy, Docker's ``mcp`` variant)."""
        if not self._config.mcp.stdio_servers or spec.mcp.get("stdio_servers"):
            return spec
        servers = msgspec.to_builtins(self._config.mcp.stdio_servers)
        return msgspec.structs.replace(spec, mcp={**spec.mcp, "stdio_servers": servers})

    async def _sandbox_for(self, session_id: str, spec: SessionSpec) -> tuple[SandboxHandle, bool]:
        """A warm sandbox claimed for the session, else a cold start (bounded by the start semaphore)."""
        self._backend.validate(spec)
        warm = self._pool.take(spec)
        if warm is None and len(self._runners) + self._starting + self._pool.total > self._config.capacity:
            self._pool.make_room(spec)  # warm sandboxes of other pools give way to a session
        if warm is not None:
            try:
                return await self._backend.claim(warm, session_id, spec), True
            except BackendError as exc:
                await self._backend.destroy(warm)
                if exc.code == codes.INVALID_SPEC:
                    raise
                log.warning("warm_claim_failed", session_id=session_id, error=str(exc))
        async with self._start_slots:
            return await self._backend.create(session_id, spec), False

    # ------------------------------------------------------------------- close
    async def _on_close(self, msg: Msg) -> None:
        try:
            ref = decode_as(msg.data, SessionRef)
        except msgspec.DecodeError as exc:
            return await self._reply(msg, ErrorReply(code=codes.BAD_PAYLOAD, message=f"bad close request: {exc}"))
        await self._reply(msg, await self.close_session(ref.session_id))
        await self._heartbeat()

    async def close_session(self, session_id: str, *, status: str = "closed", reason: str | None = None) -> SessionInfo | ErrorReply:
        runner = self._runners.pop(session_id, None)
        if runner is None:
            return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"worker {self.worker_id} has no session {session_id!r}")
        await self._forwards.close_session(session_id)
        self._vscode.forget(session_id)
        try:
            await runner.publish_status(SessionInfo(session_id=session_id, worker_id=self.worker_id,
                                                    backend=self._backend.name, status="closing", tenant=runner.tenant))
            if status == "lost":
                await runner.aclose(code=codes.SANDBOX_LOST, reason=reason or "the sandbox was lost")
            else:
                await runner.aclose(code=codes.SESSION_CLOSED, reason="the session was closed")
        finally:  # whatever the broker does, the sandbox must not leak
            if runner.handle.keep and status == "closed":
                await self._backend.keep(runner.handle)
                log.info("sandbox_kept", session_id=session_id, sandbox_id=runner.handle.sandbox_id)
            else:
                await self._backend.destroy(runner.handle)
        info = SessionInfo(session_id=session_id, worker_id=self.worker_id, backend=self._backend.name,
                           status=status, created_at=runner.handle.created_at, reason=reason,  # type: ignore[arg-type]
                           tenant=runner.tenant)
        await runner.publish_status(info)
        log.info("session_closed", session_id=session_id, status=status, reason=reason)
        return info

    async def _on_drain(self, msg: Msg) -> None:
        try:
            ref = decode_as(msg.data, WorkerRef)
        except msgspec.DecodeError as exc:
            return await self._reply(msg, ErrorReply(code=codes.BAD_PAYLOAD, message=f"bad drain request: {exc}"))
        self._draining = not ref.undo
        log.info("worker_draining" if self._draining else "worker_undrained", worker_id=self.worker_id)
        await self._reply(msg, self.info())
        await self._heartbeat()

    async def _session_request(self, msg: Msg, verb: str) -> tuple[SessionRef, SessionRunner] | None:
        """The session a worker-addressed request names and its runner; None once an error is answered."""
        try:
            ref = decode_as(msg.data, SessionRef)
        except msgspec.DecodeError as exc:
            await self._reply(msg, ErrorReply(code=codes.BAD_PAYLOAD, message=f"bad {verb} request: {exc}"))
            return None
        runner = self._runners.get(ref.session_id)
        if runner is None:
            await self._reply(msg, ErrorReply(code=codes.UNKNOWN_SESSION,
                                              message=f"worker {self.worker_id} has no session {ref.session_id!r}"))
            return None
        return ref, runner

    async def _on_freeze(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        if (found := await self._session_request(msg, verb)) is None:
            return
        ref, runner = found
        try:
            await (self._backend.pause if verb == "pause" else self._backend.resume)(runner.handle)
        except BackendError as exc:
            return await self._reply(msg, ErrorReply(code=exc.code, message=str(exc)))
        info = SessionInfo(session_id=ref.session_id, worker_id=self.worker_id, backend=self._backend.name,
                           status="paused" if verb == "pause" else "ready", created_at=runner.handle.created_at,
                           tenant=runner.tenant)
        await runner.publish_status(info)
        log.info("session_" + ("paused" if verb == "pause" else "resumed"), session_id=ref.session_id)
        await self._reply(msg, info)

    async def _on_port(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        await self._reply(msg, await port_verb(verb, msg.data, runners=self._runners, forwards=self._forwards,
                                               worker_id=self.worker_id))

    async def _on_vscode(self, msg: Msg) -> None:
        if (found := await self._session_request(msg, "vscode")) is not None:
            ref, runner = found
            await self._reply(msg, await self._vscode.open(ref.session_id, runner.client))

    def _sandbox_died(self, session_id: str, reason: str) -> None:
        """A runner found its sandbox dead: close the session as lost, in a task the worker owns
        (a stopping worker lets it finish before it closes its backend)."""
        task = asyncio.create_task(self._on_sandbox_dead(session_id, reason), name=f"lose:{session_id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _on_sandbox_dead(self, session_id: str, reason: str) -> None:
        log.warning("sandbox_died", session_id=session_id, reason=reason)
        runner = self._runners.get(session_id)
        if runner is not None and runner.spec.persistent and self._backend.can_persist:
            await self._recreate(runner, reason)
        else:
            await self.close_session(session_id, status="lost", reason=f"sandbox died: {reason}")
        await self._heartbeat()

    async def _recreate(self, runner: SessionRunner, reason: str) -> None:
        """A persistent session outlives its sandbox: a new one on the same workspace serves it.

        The actions that were running when the sandbox died are answered ``sandbox_died`` (never
        run twice); the ones queued behind them stay unacked in the stream and the new runner
        delivers them.
        Shell state (cwd, variables, background jobs) is gone; files in the workspace are not."""
        sid = runner.session_id
        self._runners.pop(sid, None)
        info = SessionInfo(session_id=sid, worker_id=self.worker_id, backend=self._backend.name, status="starting",
                           created_at=runner.handle.created_at, labels=dict(runner.handle.labels),
                           reason=f"sandbox died: {reason}; re-creating it on its workspace", tenant=runner.tenant)
        await runner.publish_status(info)
        await self._forwards.close_session(sid)
        self._vscode.forget(sid)
        runner.answer_running(codes.SANDBOX_DIED, f"the sandbox died while this action ran: {reason}")
        await runner.aclose(answer=False, delete_consumer=False)  # drains those answers, keeps the queued
        started = time.perf_counter()
        try:
            handle = await self._backend.recreate(runner.handle, runner.spec)
            fresh = self._runner(handle, runner.spec, runner.tenant)
            await fresh.start(recover=True)
        except Exception as exc:  # noqa: BLE001 - the session is lost after all, with the reason
            log.warning("sandbox_recreate_failed", session_id=sid, error=str(exc))
            await asyncio.shield(self._backend.destroy(runner.handle))
            await self._lose(info, f"sandbox died: {reason}; re-creating it failed: {exc}")
            return
        self._runners[sid] = fresh
        await fresh.publish_status(msgspec.structs.replace(info, status="recovered",
                                                           reason=f"sandbox re-created on its workspace after: {reason}"))
        log.info("sandbox_recreated", session_id=sid, sandbox_id=handle.sandbox_id,
                 ms=round((time.perf_counter() - started) * 1000, 1))

    async def _reply(self, msg: Msg, reply: msgspec.Struct) -> None:
        if msg.reply and self._nc is not None:
            await self._nc.publish(msg.reply, encode(reply))

    # ------------------------------------------------------------------- stop
    async def aclose(self, *, destroy_sandboxes: bool = True) -> None:
        """Stop intake, close every session (destroying its sandbox unless told to keep it)."""
        await unsubscribe_all(self._subs)
        await self._supervisor.aclose()
        await self._pool.aclose()
        if destroy_sandboxes:
            await asyncio.gather(*(self.close_session(sid) for sid in list(self._runners)), return_exceptions=True)
        else:
            await asyncio.gather(*(r.aclose(answer=False, delete_consumer=False) for r in self._runners.values()),
                                 return_exceptions=True)
            self._runners.clear()
        await self._forwards.aclose()
        if self._closing:
            await asyncio.wait(self._closing, timeout=30)
        await cancel_and_wait(self._tasks | self._closing)
        if "mcp" in self._services:
            await self._services["mcp"].aclose()
        await self._security.aclose()
        await self._backend.aclose()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._kv.purge(self.worker_id)
            except nats.errors.Error:
                pass
            await self._nc.drain()


def _plugins_problem(spec: SessionSpec) -> str | None:
    """Why the spec's plugins cannot be had anywhere: a name no one registered (``invalid_spec``)."""
    try:
        resolve(spec.plugins)
    except UnknownName as exc:
        return f"plugins: {exc}"
    except ValueError as exc:
        return f"plugins: {exc}"
    return None


def _mcp_problem(host: MCPConfig, spec: SessionSpec) -> str | None:
    """Why the spec's ``mcp`` cannot be used with this worker's servers (a clash, a bad field)."""
    from actors.mcp import McpConfigError, session_config

    try:
        session_config(host, spec.mcp)
    except McpConfigError as exc:
        return str(exc)
    return None


def _services(mcp: MCPConfig) -> dict[str, Any]:
    """What the worker shares with its sessions' handlers: the MCP bridge, when the SDK is installed."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None or importlib.util.find_spec("jsonschema") is None:
        log.info("mcp_bridge_disabled", reason="the mcp extra is not installed (pip install 'corral[mcp]')")
        return {}
    from actors.mcp import McpBridge

    return {"mcp": McpBridge(mcp)}
