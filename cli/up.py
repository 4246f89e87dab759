"""``corral up``: everything on one machine in one process tree.

An embedded nats-server with JetStream (unless an existing broker is named), the controller,
one or more workers, and the audit writer. Ctrl-C drains and stops everything.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
import os
from pathlib import Path
import signal
import sys
from typing import Any

import msgspec
import structlog

from actors import StreamConfigOptions, Supervisor, metrics
from actors.audit import AuditWriter, AuditWriterConfig, load_private_key
from actors.controller import Controller, ControllerConfig
from actors.embedded import EmbeddedNats
from actors.mcp import MCPConfig
from actors.secure import Role, SecureError, SecureStore, TlsFiles
from protocol import Subjects, codes, connect_nats
from workers.backends import deployment_id
from workers.security import SecurityConfig
from workers.worker import Worker, WorkerConfig

log = structlog.get_logger()


class UpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ".corral"
    nats_url: str | None = None
    """An existing broker; None starts the embedded one."""
    nats_port: int = 4222
    backend: str = "auto"
    kubeconfig: str | None = None
    """The kubernetes backend's cluster (None: KUBECONFIG, ~/.kube/config, else in-cluster)."""
    namespace: str = "default"
    """The kubernetes backend's namespace for sandbox pods."""
    executors_file: str | None = None
    """The remote backend's executors (a JSON or TOML list, docs/remote.md)."""
    workers: int = 1
    capacity: int = 64
    prefix: str = "corral"
    audit: bool = True
    audit_dir: str | None = None
    """Where the audit writer keeps its day files (default ``<data_dir>/audit``)."""
    audit_key: str | None = None
    """An Ed25519 private key (PEM, ``corral audit keygen``): every audit record is signed with it."""
    metrics_port: int | None = None
    """Serve Prometheus /metrics of every part of this deployment on this port."""
    warm_pool: int = 2
    allowed_mounts: list[str] = []
    """Host directories sessions may mount (SessionSpec.mounts)."""
    retention_s: float = 7 * 24 * 3600
    """How long the stream keeps every action and observation."""
    stream_max_bytes: int = StreamConfigOptions().max_bytes
    """The stream's size cap (oldest messages go first)."""
    mcp: MCPConfig = MCPConfig()
    """MCP servers of every session (``--mcp-config`` and ``CORRAL_MCP_CONFIG``, merged)."""
    public_host: str = "127.0.0.1"
    """Where forwarded sandbox ports listen (``corral session expose``)."""
    secure: bool = False
    """Start the embedded broker with users per role and per tenant (``actors.secure``); every part
    of the deployment logs in as its role."""
    tls_cert: str | None = None
    """With ``secure``: TLS on the client port with this certificate (and ``tls_key``)."""
    tls_key: str | None = None
    tls_ca: str | None = None
    """The CA clients verify the certificate with (default: the certificate itself, self-signed)."""
    security: SecurityConfig = SecurityConfig()
    """Every worker's security analyzers, rules and policy (``--security-config``)."""


async def resolve_backend(name: str) -> str:
    """``auto``: docker when an engine answers, else local (which says loudly that it isolates nothing)."""
    if name != "auto":
        return name
    try:
        import aiodocker
    except ImportError:
        return "local"
    try:
        docker = aiodocker.Docker()
    except (ValueError, OSError):
        return "local"
    try:
        async with asyncio.timeout(2):
            await docker.system.info()
        return "docker"
    except (aiodocker.exceptions.DockerError, OSError, TimeoutError):
        return "local"
    finally:
        await docker.close()


def _progress(line: str) -> None:
    print(f"corral: {line}", file=sys.stderr, flush=True)


class Deployment:
    """The parts of ``corral up``; also what end-to-end tests start."""

    def __init__(self, config: UpConfig) -> None:
        self.config = config
        self.url = config.nats_url or ""
        self.workers: list[Worker] = []
        self.controller: Controller | None = None
        self.audit: AuditWriter | None = None
        self._stack = AsyncExitStack()
        self._supervisor = Supervisor("up")
        self.secure: SecureStore | None = None
        """With ``secure``: the users and credentials files (``tenant add`` goes through it)."""

    async def start(self) -> None:
        if self.config.audit and self.config.audit_key:
            load_private_key(self.config.audit_key)  # a bad key fails before anything starts
        data = Path(self.config.data_dir).absolute()
        data.mkdir(parents=True, exist_ok=True)
        if self.config.secure:
            self.url = await self._start_secure_broker(data)
        elif not self.config.nats_url:
            broker = EmbeddedNats(str(data / "nats"), port=self.config.nats_port)
            await self._stack.enter_async_context(broker)
            self.url = broker.url
        subjects = Subjects(self.config.prefix)
        stream = StreamConfigOptions(max_age_s=self.config.retention_s, max_bytes=self.config.stream_max_bytes)
        self.controller = Controller(ControllerConfig(nats_url=self.url, prefix=self.config.prefix, stream=stream,
                                                      creds=self._creds("controller")))
        await self.controller.start()
        self._stack.push_async_callback(self.controller.aclose)
        backend = await resolve_backend(self.config.backend)
        for n in range(self.config.workers):
            worker = Worker(WorkerConfig(
                nats_url=self.url, prefix=self.config.prefix, backend=self._backend_config(backend), capacity=self.config.capacity,
                base_dir=str(data / "workers"), worker_id=f"{os.uname().nodename}-{backend}-{n}-{deployment_id(str(data))}".replace(".", "-"),
                warm_pool=self.config.warm_pool, stream=stream, allowed_mounts=list(self.config.allowed_mounts),
                mcp=self.config.mcp, security=self.config.security,
                public_host=self.config.public_host, creds=self._creds("worker"),
            ))
            await worker.start(progress=_progress)
            self._stack.push_async_callback(worker.aclose)
            self.workers.append(worker)
        if self.config.audit:
            nc = await connect_nats(self.url, name="corral-audit", creds=self._creds("observer"))
            # close, not drain: draining waits on the writer's cancelled pull request until it times out.
            self._stack.push_async_callback(nc.close)
            audit_dir = os.path.abspath(self.config.audit_dir) if self.config.audit_dir else str(data / "audit")
            self.audit = AuditWriter(nc, subjects, AuditWriterConfig(directory=audit_dir, key_file=self.config.audit_key))
            await self.audit.open()  # a locked or corrupt log, a bad key: fail now, not in a restart loop
            self._supervisor.start("audit", self.audit.run)
            self._stack.push_async_callback(self._supervisor.aclose)
        if self.config.metrics_port:
            metrics.serve(self.config.metrics_port)
        log.info("corral_up", nats=self.url, backend=backend, workers=len(self.workers), data_dir=str(data))

    async def _start_secure_broker(self, data: Path) -> str:
        """The embedded broker with the generated configuration (``<data>/secure``)."""
        config = self.config
        if config.nats_url:
            raise SecureError(codes.INVALID_ARGUMENT, "--secure starts its own broker: it cannot be combined with --nats "
                                                  "(for a broker of your own, see `corral secure init`)")
        if bool(config.tls_cert) != bool(config.tls_key):
            raise SecureError(codes.INVALID_ARGUMENT, "TLS needs both --tls-cert and --tls-key")
        tls = None
        if config.tls_cert and config.tls_key:
            cert, key = str(Path(config.tls_cert).absolute()), str(Path(config.tls_key).absolute())
            tls = TlsFiles(cert_file=cert, key_file=key, ca_file=str(Path(config.tls_ca).absolute()) if config.tls_ca else cert)
        self.secure = SecureStore(data)
        self.secure.init(prefix=config.prefix, port=config.nats_port, tls=tls)
        broker = EmbeddedNats(str(data / "nats"), port=config.nats_port, config_file=str(self.secure.config_file),
                              tls=tls is not None)
        await self._stack.enter_async_context(broker)
        return broker.url

    def _backend_config(self, backend: str) -> Any:
        """The backend's name, or its config: kubernetes with the cluster and namespace asked for,
        remote with its executors file."""
        if backend == "remote" and self.config.executors_file:
            from workers.backends import RemoteConfig

            return RemoteConfig(executors_file=self.config.executors_file)
        if backend != "kubernetes":
            return backend
        from workers.backends.kubernetes import KubernetesConfig

        return KubernetesConfig(kubeconfig=self.config.kubeconfig, namespace=self.config.namespace)

    def _creds(self, role: Role) -> str | None:
        return str(self.secure.creds_path(role)) if self.secure is not None else None

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Deployment:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def run_until_signalled(config: UpConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Deployment(config) as deployment:
        print(f"corral is up: NATS {deployment.url}  (Ctrl-C stops)", flush=True)
        if deployment.secure is not None:
            print(f"corral: secure; operator credentials {deployment.secure.creds_path('admin')}; "
                  f"add tenants with `corral tenant add NAME --data-dir {config.data_dir}`", flush=True)
        await stop.wait()
        print("corral: stopping (draining sessions)...", flush=True)
