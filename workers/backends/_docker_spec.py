"""The Docker backend's configuration, session-limit validation and container definition.

Pure functions over plain data: nothing here talks to the engine, so the container a session gets
can be read (and tested) without one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from protocol import SessionSpec

from ._limits import invalid as _invalid
from ._limits import resolve_network, resolve_resources
from ._plugins import plugin_variants

LABEL_SANDBOX = "corral.sandbox"
LABEL_SESSION = "corral.session"
LABEL_WORKER = "corral.worker"
LABEL_VERSION = "corral.version"
LABEL_DIR = "corral.dir"
LABEL_DEPLOYMENT = "corral.deployment"
"""The deployment (a hash of its data dir) that made the container: only it adopts or sweeps it."""
VERSION = "0.1.0"

SOCKET_MOUNT = "/run/corral"
SOCKET_NAME = "executor.sock"
WORKSPACE = "/workspace"
OUTPUT_DIR = "/tmp/corral/outputs"
EXEC_PORT = 8000
"""The executor's TCP port inside the container (TCP transport only)."""
INTERNAL_NETWORK = "corral-internal"
"""Internal bridge network (no egress, no inter-container traffic): TCP transport without egress."""



class DockerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name",
                   tag="docker"):
    """How the Docker backend builds sandboxes; session specs may ask for less, never more."""

    image: str | None = None
    """Default image; None: the runtime image from ``images.ensure_runtime_image``."""
    docker_url: str | None = None
    """None: DOCKER_HOST, else the local engine socket."""
    uid: int = 1000
    gid: int = 1000
    transport: Literal["unix", "tcp"] = "unix"
    network: Literal["none", "egress"] = "none"
    """A session's network when its spec names none."""
    egress_network: str = "bridge"
    fence_egress: bool = True
    """Egress containers get prohibit routes to every host address (the broker's included) and
    ``egress_deny``; needs a root worker (nsenter). Off: egress reaches the host's services."""
    egress_deny: tuple[str, ...] = ("169.254.0.0/16",)
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    max_cpus: float | None = None
    """None: the engine's CPU count."""
    max_memory_mb: int | None = None
    """None: the engine's memory."""
    max_pids: int = 32768
    readonly_rootfs: bool = False
    """Read-only image filesystem; /workspace stays writable and /tmp is a tmpfs."""
    tmp_size_mb: int = 512
    workspace: Literal["bind", "volume"] = "bind"
    """``bind``: a host directory per sandbox; ``volume``: a named volume per sandbox."""
    socket_dir: str | None = None
    """Host directory of the per-sandbox socket dirs; default /tmp/corral-<uid> (socket paths are short)."""
    port_lock_dir: str | None = None
    start_timeout_s: float = 30.0
    """A start exceeding this is removed and retried once, then reported."""
    init_cmd: tuple[str, ...] = ("/usr/bin/tini", "--")
    executor_cmd: tuple[str, ...] = ("corral-executor",)
    log_max_size: str = "1m"


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What one sandbox gets, after the session's wishes met the backend's defaults and caps."""

    image: str | None
    cpus: float
    memory_mb: int
    pids: int
    network: Literal["none", "egress"]
    runtime: str | None = None
    """The engine's OCI runtime (``runsc`` for gVisor); None: the engine's default."""
    mounts: tuple[tuple[str, str, bool], ...] = ()
    """(host source, target, read-only) of the session's mounts: fixed when the container starts."""
    variants: tuple[str, ...] = ()
    """Image variants the session's plugins need, sorted: with no image named, they pick the
    runtime image; a named image must have them."""

    def pool_key(self) -> str:
        # image and variants together name the image: warm sandboxes of other variant sets never mix
        return json.dumps([self.image or "", list(self.variants), self.cpus, self.memory_mb, self.pids, self.network,
                           self.runtime or "", list(self.mounts)])


def resolve_limits(spec: SessionSpec, config: DockerConfig, *, engine_cpus: float | None = None,
                   engine_memory_mb: int | None = None, engine_runtimes: frozenset[str] = frozenset()) -> Limits:
    """The session's limits, validated; BackendError ``invalid_spec`` names the first bad value."""
    wanted = resolve_resources(spec, memory_mb=config.memory_mb, pids=config.pids, cpus=config.cpus,
                               max_memory_mb=config.max_memory_mb or engine_memory_mb, max_pids=config.max_pids,
                               max_cpus=config.max_cpus or engine_cpus)
    cpus, memory_mb, pids = wanted.cpus or config.cpus, wanted.memory_mb, wanted.pids
    network = resolve_network(spec, config.network)
    if spec.image is not None and not spec.image.strip():
        _invalid("image is empty")
    if spec.workdir is not None and not spec.workdir.startswith("/"):
        _invalid(f"workdir={spec.workdir!r} must be an absolute path inside the sandbox (e.g. {WORKSPACE})")
    runtime = None
    if spec.isolation == "gvisor":
        if GVISOR_RUNTIME not in engine_runtimes:
            have = ", ".join(sorted(engine_runtimes)) or "unknown"
            _invalid(f"isolation='gvisor' needs the engine's {GVISOR_RUNTIME} runtime, which this engine lacks "
                     f"(runtimes: {have})")
        runtime = GVISOR_RUNTIME
    elif spec.isolation not in (None, "default"):
        _invalid(f"isolation={spec.isolation!r} is not one of default, gvisor")
    return Limits(image=spec.image or config.image, cpus=round(float(cpus), 3), memory_mb=int(memory_mb),
                  pids=int(pids), network=network, runtime=runtime,  # type: ignore[arg-type]
                  mounts=tuple((m.source, m.target, m.read_only) for m in spec.mounts),
                  variants=_variants(spec, config))


def _variants(spec: SessionSpec, config: DockerConfig) -> tuple[str, ...]:
    """The image variants the session needs: its plugins', and ``mcp`` for stdio MCP servers when
    the worker picks the image (an image the session or worker names is taken as it is for those)."""
    variants = plugin_variants(spec.plugins)
    if spec.mcp.get("stdio_servers") and not (spec.image or config.image):
        variants = tuple(sorted({*variants, "mcp"}))
    return variants


GVISOR_RUNTIME = "runsc"


def executor_config(key: str, transport: str) -> dict[str, Any]:
    """CORRAL_EXECUTOR_CONFIG for the executor inside the container."""
    config: dict[str, Any] = {"key": key, "workdir": WORKSPACE, "output_dir": OUTPUT_DIR}
    if transport == "unix":
        config["socket_path"] = f"{SOCKET_MOUNT}/{SOCKET_NAME}"
    else:
        config.update(host="0.0.0.0", port=EXEC_PORT)
    return config


def network_mode(limits: Limits, config: DockerConfig) -> str:
    if limits.network == "egress":
        return config.egress_network
    return "none" if config.transport == "unix" else INTERNAL_NETWORK


def container_body(*, image: str, limits: Limits, config: DockerConfig, labels: dict[str, str],
                   executor_json: str, socket_dir: str | None, workspace_source: str,
                   host_port: int | None) -> dict[str, Any]:
    """The engine's ``containers/create`` body for one sandbox, hardened by default."""
    mounts: list[dict[str, Any]] = [
        {"Type": "volume" if config.workspace == "volume" else "bind", "Source": workspace_source, "Target": WORKSPACE},
    ]
    if socket_dir is not None:
        mounts.append({"Type": "bind", "Source": socket_dir, "Target": SOCKET_MOUNT})
    mounts += [{"Type": "bind", "Source": source, "Target": target, "ReadOnly": read_only}
               for source, target, read_only in limits.mounts]
    host: dict[str, Any] = {
        "NetworkMode": network_mode(limits, config),
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],  # the engine's default seccomp profile stays on
        "Privileged": False,
        "PidsLimit": limits.pids,
        "Memory": limits.memory_mb * 1024 * 1024,
        "MemorySwap": limits.memory_mb * 1024 * 1024,  # equal to Memory: no swap on top
        "NanoCpus": int(limits.cpus * 1e9),
        "ReadonlyRootfs": config.readonly_rootfs,
        "Mounts": mounts,
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {"Type": "json-file", "Config": {"max-size": config.log_max_size, "max-file": "1"}},
    }
    if limits.runtime is not None:
        host["Runtime"] = limits.runtime
    if config.readonly_rootfs:
        host["Tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={config.tmp_size_mb}m,mode=1777"}
    body: dict[str, Any] = {
        "Image": image,
        "Entrypoint": list(config.init_cmd),  # an init as PID 1 reaps the shells' zombies
        "Cmd": list(config.executor_cmd),
        "User": f"{config.uid}:{config.gid}",
        "WorkingDir": WORKSPACE,
        "Env": [f"CORRAL_EXECUTOR_CONFIG={executor_json}"],
        "Labels": labels,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "HostConfig": host,
    }
    if host_port is not None:
        body["ExposedPorts"] = {f"{EXEC_PORT}/tcp": {}}
        host["PortBindings"] = {f"{EXEC_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]}
    return body
