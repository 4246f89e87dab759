"""The ``corral`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from typing import Any, Callable

import click

from protocol import (
    Client,
    CmdChunk,
    CmdOutput,
    CmdRun,
    ConfirmationRequired,
    Error,
    IPythonOutput,
    IPythonRun,
    Rejected,
    Subjects,
    json_schema,
    new_id,
)

from ._common import configure_logging, current_creds, nats_option, prefix_option, print_json, run_cli, with_client
from ._mcp_cmd import load_mcp_config, mcp_config_option
from ._security_cmd import add_session_confirm, security, security_options


@click.group()
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-json", is_flag=True, help="Structured JSON logs on stderr")
def cli(log_level: str, log_json: bool) -> None:
    """corral: sandboxed computers for AI agents, over NATS."""
    configure_logging(log_level, log_json)


def kubernetes_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--kubeconfig and --namespace of the kubernetes backend (worker and up)."""
    f = click.option("--namespace", default="default", show_default=True,
                     help="kubernetes backend: where sandbox pods go (it must exist)")(f)
    return click.option("--kubeconfig", default=None, type=click.Path(exists=True, dir_okay=False),
                        help="kubernetes backend: the cluster (default: KUBECONFIG, ~/.kube/config, else in-cluster)")(f)


def _in_cluster(kubeconfig: str | None) -> bool:
    """--kubeconfig's documented fallback: no file given, none in KUBECONFIG or ~/.kube/config, and a
    pod's service account (compose/kubernetes/deploy/30-workers.yaml) -> the in-cluster config."""
    if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
        return False
    return "KUBERNETES_SERVICE_HOST" in os.environ


@cli.command()
@click.option("--nats", "nats_url", default=None, help="Use an existing broker instead of the embedded one")
@click.option("--port", "nats_port", default=4222, show_default=True, help="Port of the embedded broker")
@click.option("--data-dir", default=".corral", show_default=True, help="Broker data, sandboxes, audit log")
@click.option("--backend", default="auto", show_default=True,
              help="auto (docker when an engine answers, else local) | docker | kubernetes | bubblewrap | local")
@click.option("--workers", default=1, show_default=True)
@click.option("--capacity", default=64, show_default=True, help="Sandboxes per worker")
@click.option("--warm-pool", default=2, show_default=True, help="Prestarted sandboxes per worker and pool key")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port")
@click.option("--retention-days", type=float, default=7.0, show_default=True,
              help="How long the stream keeps every action and observation")
@click.option("--stream-max-gb", type=float, default=4.0, show_default=True,
              help="Size cap of the stream (the oldest messages go first)")
@click.option("--allow-mount", "allowed_mounts", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A host directory sessions may mount (e.g. repository mirrors); repeatable")
@click.option("--public-host", default="127.0.0.1", show_default=True,
              help="Where forwarded sandbox ports listen (0.0.0.0 opens them to the network)")
@click.option("--secure", is_flag=True,
              help="Broker users per role and per tenant (`corral tenant add`); every part logs in as its role")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --secure: TLS on the client port with this certificate (and --tls-key); URLs become tls://")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The CA clients verify the certificate with (default: the certificate itself)")
@click.option("--audit-dir", default=None, type=click.Path(file_okay=False),
              help="The audit log's directory (one audit-YYYY-MM-DD.jsonl per UTC day)  [default: DATA_DIR/audit]")
@click.option("--audit-key", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Sign every audit record with this Ed25519 private key (PEM; `corral audit keygen`)")
@click.option("--executors", "executors_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="remote backend: a JSON or TOML list of executors (see docs/remote.md)")
@prefix_option
@mcp_config_option
@security_options
@kubernetes_options
def up(nats_url: str | None, nats_port: int, data_dir: str, backend: str, workers: int, capacity: int,
       warm_pool: int, metrics_port: int | None, retention_days: float, stream_max_gb: float,
       allowed_mounts: tuple[str, ...], public_host: str, secure: bool, tls_cert: str | None, tls_key: str | None,
       tls_ca: str | None, audit_dir: str | None, audit_key: str | None, prefix: str, mcp_config: str | None,
       security: Any, kubeconfig: str | None, namespace: str, executors_file: str | None) -> None:
    """Run NATS, the controller, workers and the audit writer in the foreground."""
    from .up import UpConfig, run_until_signalled

    if (tls_cert or tls_key or tls_ca) and not secure:
        raise click.UsageError("--tls-cert/--tls-key/--tls-ca need --secure")
    if (backend == "remote") != bool(executors_file):
        raise click.UsageError("--backend remote and --executors FILE go together")

    run_cli(run_until_signalled(UpConfig(nats_url=nats_url, nats_port=nats_port, data_dir=data_dir, backend=backend,
                                      kubeconfig=kubeconfig and os.path.abspath(kubeconfig), namespace=namespace,
                                      executors_file=executors_file and os.path.abspath(executors_file),
                                      workers=workers, capacity=capacity, prefix=prefix, warm_pool=warm_pool,
                                      metrics_port=metrics_port, retention_s=retention_days * 86400,
                                      stream_max_bytes=int(stream_max_gb * 2**30),
                                      allowed_mounts=[os.path.abspath(p) for p in allowed_mounts],
                                      public_host=public_host, mcp=load_mcp_config(mcp_config), secure=secure,
                                      tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, security=security,
                                      audit_dir=audit_dir, audit_key=audit_key)))


@cli.command()
@nats_option
@prefix_option
@click.option("--heartbeat-ttl", default=10.0, show_default=True, help="Seconds of silence after which a worker is lost")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port")
@click.option("--lease-ttl", default=5.0, show_default=True,
              help="Seconds before another controller takes over the duties of a dead leader")
def controller(nats_url: str, prefix: str, heartbeat_ttl: float, metrics_port: int | None, lease_ttl: float) -> None:
    """Run a controller (placement, registry, reaping); run several for failover."""
    from actors import metrics
    from actors.controller import Controller, ControllerConfig

    async def main() -> None:
        ctl = Controller(ControllerConfig(nats_url=nats_url, prefix=prefix, heartbeat_ttl_s=heartbeat_ttl,
                                          lease_ttl_s=lease_ttl, creds=current_creds()))
        await ctl.start()
        if metrics_port:
            metrics.serve(metrics_port, "0.0.0.0")
        role = "leading" if ctl.leading else "standing by"
        print(f"corral controller {ctl.controller_id} on {nats_url} ({role})", flush=True)
        try:
            await _wait_for_signal()
        finally:
            await ctl.aclose()

    run_cli(main())


@cli.group(invoke_without_command=True)
@click.pass_context
@nats_option
@prefix_option
@click.option("--backend", default="local", show_default=True)
@click.option("--worker-id", default=None, help="Stable id (default: <hostname>-<backend>-<hash of the base dir>)")
@click.option("--capacity", default=64, show_default=True)
@click.option("--base-dir", default=".corral/workers", show_default=True)
@click.option("--warm-pool", default=2, show_default=True, help="Prestarted sandboxes per pool key")
@click.option("--image", default=None, help="docker/kubernetes backend: sandbox image (default: the runtime image, built if missing)")
@click.option("--executors", "executors_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="remote backend: a JSON or TOML list of executors (see docs/remote.md)")
@click.option("--allow-mount", "allowed_mounts", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A host directory sessions may mount (e.g. repository mirrors); repeatable")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port")
@click.option("--public-host", default="127.0.0.1", show_default=True,
              help="Where forwarded sandbox ports listen (0.0.0.0 opens them to the network)")
@mcp_config_option
@security_options
@kubernetes_options
def worker(ctx: click.Context, nats_url: str, prefix: str, backend: str, worker_id: str | None, capacity: int,
           base_dir: str, warm_pool: int, image: str | None, executors_file: str | None, allowed_mounts: tuple[str, ...],
           metrics_port: int | None, public_host: str, mcp_config: str | None, security: Any,
           kubeconfig: str | None, namespace: str) -> None:
    """Run one runtime worker (or manage workers: `corral worker drain ID`)."""
    if ctx.invoked_subcommand is not None:
        return
    from actors import metrics
    from workers.backends import DockerConfig, RemoteConfig
    from workers.backends.kubernetes import KubernetesConfig
    from workers.worker import Worker, WorkerConfig

    async def main() -> None:
        config: Any = DockerConfig(image=image) if backend == "docker" else \
            RemoteConfig(executors_file=os.path.abspath(executors_file)) if backend == "remote" and executors_file else backend
        if backend == "kubernetes":
            config = KubernetesConfig(image=image, kubeconfig=kubeconfig and os.path.abspath(kubeconfig),
                                      namespace=namespace, in_cluster=_in_cluster(kubeconfig))
        w = Worker(WorkerConfig(nats_url=nats_url, prefix=prefix, backend=config, worker_id=worker_id,
                                capacity=capacity, base_dir=os.path.abspath(base_dir), warm_pool=warm_pool,
                                allowed_mounts=[os.path.abspath(p) for p in allowed_mounts], public_host=public_host,
                                mcp=load_mcp_config(mcp_config), creds=current_creds(), security=security))
        await w.start(progress=lambda line: print(f"corral: {line}", file=sys.stderr, flush=True))
        if metrics_port:
            metrics.serve(metrics_port, "0.0.0.0")
        print(f"corral worker {w.worker_id} ({backend}) on {nats_url}", flush=True)
        try:
            await _wait_for_signal()
        finally:
            await w.aclose()

    run_cli(main())


async def _wait_for_signal() -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@nats_option
@click.option("--session", "session_id", default=None, help="Run in this session (default: a throw-away one)")
@click.option("--backend", default=None)
@click.option("--shell", default="main", show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=None, help="Hard timeout in seconds")
@click.option("--ipython", is_flag=True, help="COMMAND is Python for the session's IPython kernel (plugin jupyter)")
@click.option("--kernel", default="main", show_default=True, help="With --ipython: the kernel's name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(nats_url: str, session_id: str | None, backend: str | None, shell: str, timeout_s: float | None,
          ipython: bool, kernel: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a sandbox, stream its output, exit with its exit code (with --ipython: 0 when
    the cell completed, 1 when it raised, 2 otherwise)."""
    text = command[0] if len(command) == 1 else shlex.join(command)
    action: CmdRun | IPythonRun = (IPythonRun(id=new_id(), code=text, kernel=kernel, timeout_s=timeout_s) if ipython
                                   else CmdRun(id=new_id(), command=text, shell=shell, timeout_s=timeout_s))

    async def main() -> int:
        async with await Client.connect(nats_url) as client:
            if session_id:
                session = await client.attach(session_id)
            else:
                spec: dict[str, Any] = {"backend": backend} if backend else {}
                session = await client.create_session(**spec, **({"plugins": ["jupyter"]} if ipython else {}))
            try:
                return await _stream_command(session, action)
            finally:
                if session_id:
                    await session.detach()
                else:
                    await session.close()

    sys.exit(run_cli(main()))


def _print_final(content: str, streamed: bool) -> None:
    """A final answer's output, unless its chunks already printed it; ends on a newline."""
    if not streamed:
        sys.stdout.write(content)
    if content and not content.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


async def _stream_command(session: Any, action: CmdRun | IPythonRun) -> int:
    streamed = False
    async for obs in session.stream(action):
        match obs:
            case CmdChunk():
                streamed = True
                sys.stdout.write(obs.data)
                sys.stdout.flush()
            case CmdOutput():
                _print_final(obs.content, streamed)
                if obs.truncated and obs.full_output_path:
                    print(f"[output truncated; full output in the sandbox at {obs.full_output_path}]", file=sys.stderr)
                if obs.status != "completed":
                    print(f"[{obs.status}] {obs.hint or ''}".rstrip(), file=sys.stderr)
                return obs.exit_code if obs.exit_code is not None else 1
            case IPythonOutput():
                _print_final(obs.content, streamed)
                if obs.images:
                    print(f"[{len(obs.images)} image(s) displayed; not shown here]", file=sys.stderr)
                if obs.status not in ("completed", "error"):
                    print(f"[{obs.status}] {obs.reason or ''}".rstrip(), file=sys.stderr)
                return {"completed": 0, "error": 1}.get(obs.status, 2)
            case ConfirmationRequired():
                print(f"[held for confirmation: {obs.risk} risk, {obs.reason}; within {obs.timeout_s or 0:g} s run: "
                      f"corral session confirm {obs.session_id} {obs.action_id} [--reject]]", file=sys.stderr, flush=True)
            case Rejected():
                who = f" by {obs.approver}" if obs.approver else ""
                print(f"rejected ({obs.decided_by}{who}, {obs.risk} risk): {obs.reason}", file=sys.stderr)
                return 2
            case Error():
                print(f"error {obs.code}: {obs.message}", file=sys.stderr)
                return 2
            case _:
                print(f"unexpected observation {obs!r}", file=sys.stderr)
                return 2
    return 2


@cli.group()
def session() -> None:
    """Create, list, inspect and close sessions."""






@session.command("create")
@nats_option
@click.option("--backend", default=None)
@click.option("--image", default=None)
@click.option("--workdir", default=None)
@click.option("--env", "env", multiple=True, help="KEY=VALUE, repeatable")
@click.option("--secret", "secret_names", multiple=True,
              help="NAME: a secret env variable of the sandbox, its value taken from this command's own environment "
                   "(never from the command line); masked as [secret:NAME] in everything published. Repeatable")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE, repeatable")
@click.option("--idle-timeout", type=float, default=None)
@click.option("--plugin", "plugins", multiple=True, help="In-sandbox plugin (jupyter, agent_skills, vscode), repeatable")
@click.option("--json", "as_json", is_flag=True)
def session_create(nats_url: str, backend: str | None, image: str | None, workdir: str | None, env: tuple[str, ...],
                   secret_names: tuple[str, ...], labels: tuple[str, ...], idle_timeout: float | None,
                   plugins: tuple[str, ...], as_json: bool) -> None:
    spec: dict[str, Any] = {"env": _pairs(env), "labels": _pairs(labels), "plugins": list(plugins),
                            "secrets": _from_environment(secret_names)}
    for name, value in (("backend", backend), ("image", image), ("workdir", workdir), ("idle_timeout_s", idle_timeout)):
        if value is not None:
            spec[name] = value

    async def create(client: Client) -> Any:
        s = await client.create_session(**spec)
        await s.detach()
        return s.info

    info = with_client(nats_url, create)
    print_json(info) if as_json else click.echo(info.session_id)


def _from_environment(names: tuple[str, ...]) -> dict[str, str]:
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise click.BadParameter(f"--secret names a variable of this command's environment; not set: {', '.join(missing)}")
    return {name: os.environ[name] for name in names}


def _pairs(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


@session.command("list")
@nats_option
@click.option("--json", "as_json", is_flag=True)
def session_list(nats_url: str, as_json: bool) -> None:
    sessions = with_client(nats_url, lambda c: c.list_sessions())
    if as_json:
        return print_json(sessions)
    click.echo(f"{'SESSION':28} {'WORKER':28} {'BACKEND':8} STATUS")
    for s in sessions:
        click.echo(f"{s.session_id:28} {s.worker_id:28} {s.backend:8} {s.status}")


@session.command("get")
@nats_option
@click.argument("session_id")
def session_get(nats_url: str, session_id: str) -> None:
    print_json(with_client(nats_url, lambda c: c.get_session(session_id)))


@session.command("close")
@nats_option
@click.argument("session_ids", nargs=-1, required=True)
def session_close(nats_url: str, session_ids: tuple[str, ...]) -> None:
    async def close(client: Client) -> None:
        for sid in session_ids:
            info = await client.close_session(sid)
            click.echo(f"{info.session_id} {info.status}")
    with_client(nats_url, close)


@session.command("pause")
@nats_option
@click.argument("session_id")
def session_pause(nats_url: str, session_id: str) -> None:
    """Freeze every process of the session's sandbox."""
    info = with_client(nats_url, lambda c: c.pause_session(session_id))
    click.echo(f"{info.session_id} {info.status}")


@session.command("resume")
@nats_option
@click.argument("session_id")
def session_resume(nats_url: str, session_id: str) -> None:
    """Thaw a paused session."""
    info = with_client(nats_url, lambda c: c.resume_session(session_id))
    click.echo(f"{info.session_id} {info.status}")


@session.command("expose")
@nats_option
@click.argument("session_id")
@click.argument("port", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the PortInfo")
def session_expose(nats_url: str, session_id: str, port: int, as_json: bool) -> None:
    """Forward PORT of the sandbox's loopback to a host port; prints its URL."""
    info = with_client(nats_url, lambda c: c.expose(session_id, port))
    if as_json:
        return print_json(info)
    click.echo(info.url)


@session.command("unexpose")
@nats_option
@click.argument("session_id")
@click.argument("port", type=int)
def session_unexpose(nats_url: str, session_id: str, port: int) -> None:
    """Stop forwarding PORT of the sandbox."""
    info = with_client(nats_url, lambda c: c.unexpose(session_id, port))
    click.echo(f"{info.session_id} port {info.port} no longer on {info.host}:{info.host_port}")


@session.command("vscode")
@nats_option
@click.option("--json", "as_json", is_flag=True)
@click.argument("session_id")
def session_vscode(nats_url: str, session_id: str, as_json: bool) -> None:
    """Start VS Code (code-server) on the session's workdir and print its URL (the session needs
    the vscode plugin: corral session create --plugin vscode)."""
    info = with_client(nats_url, lambda c: c.vscode(session_id))
    print_json(info) if as_json else click.echo(info.url)


@worker.command("drain")
@nats_option
@click.argument("worker_id")
@click.option("--undo", is_flag=True, help="Accept new sessions again")
def worker_drain(nats_url: str, worker_id: str, undo: bool) -> None:
    """Stop placing new sessions on WORKER_ID; its sessions carry on."""
    info = with_client(nats_url, lambda c: c.drain_worker(worker_id, undo=undo))
    click.echo(f"{info.worker_id} {'draining' if info.draining else 'accepting'} ({info.running} running)")


@cli.command()
@nats_option
@click.option("--json", "as_json", is_flag=True)
def workers(nats_url: str, as_json: bool) -> None:
    """List live workers with capacity and load."""
    found = with_client(nats_url, lambda c: c.workers())
    if as_json:
        return print_json(found)
    click.echo(f"{'WORKER':32} {'BACKEND':8} {'RUNNING':>7} {'STARTING':>8} {'CAPACITY':>8}")
    for w in found:
        click.echo(f"{w.worker_id:32} {w.backend:8} {w.running:>7} {w.starting:>8} {w.capacity:>8}")


@cli.command()
@nats_option
@click.option("--once", is_flag=True, help="Print one table and exit")
@click.option("--interval", default=1.0, show_default=True)
def status(nats_url: str, once: bool, interval: float) -> None:
    """A live table of workers and sessions."""

    async def main() -> None:
        async with await Client.connect(nats_url) as client:
            if once or not sys.stdout.isatty():
                while True:
                    found, sessions = await asyncio.gather(client.workers(), client.list_sessions())
                    click.echo(_status_table(found, sessions))
                    if once:
                        return
                    await asyncio.sleep(interval)
            from rich.live import Live

            with Live(auto_refresh=False, screen=False) as live:
                while True:
                    found, sessions = await asyncio.gather(client.workers(), client.list_sessions())
                    live.update(_status_tables(found, sessions), refresh=True)
                    await asyncio.sleep(interval)

    try:
        run_cli(main())
    except KeyboardInterrupt:
        pass


def _status_tables(found: list[Any], sessions: list[Any]) -> Any:
    """The live view on a terminal: a table of workers, then the newest sessions."""
    from rich.console import Group
    from rich.table import Table

    workers = Table(title=f"workers: {len(found)}", title_justify="left")
    for name in ("WORKER", "BACKEND", "RUNNING", "STARTING", "WARM", "CAPACITY", "STATE"):
        workers.add_column(name, justify="right" if name in ("RUNNING", "STARTING", "WARM", "CAPACITY") else "left")
    for w in sorted(found, key=lambda w: w.worker_id):
        workers.add_row(w.worker_id, w.backend, str(w.running), str(w.starting), str(w.warm), str(w.capacity),
                        "[yellow]draining[/]" if w.draining else "[green]up[/]")
    by_status: dict[str, int] = {}
    for s in sessions:
        by_status[s.status] = by_status.get(s.status, 0) + 1
    counts = ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())) or "none"
    table = Table(title=f"sessions: {len(sessions)} ({counts})", title_justify="left")
    for name in ("SESSION", "WORKER", "STATUS", "LABELS"):
        table.add_column(name)
    colours = {"ready": "green", "lost": "red", "paused": "yellow", "recovered": "cyan"}
    for s in sorted(sessions, key=lambda s: s.created_at)[-30:]:
        labels = ",".join(f"{k}={v}" for k, v in s.labels.items())
        table.add_row(s.session_id, s.worker_id, f"[{colours.get(s.status, 'white')}]{s.status}[/]", labels)
    return Group(workers, table)


def _status_table(found: list[Any], sessions: list[Any]) -> str:
    lines = [f"workers: {len(found)}   sessions: {len(sessions)}", "",
             f"{'WORKER':32} {'BACKEND':10} {'RUNNING':>7} {'STARTING':>8} {'WARM':>5} {'CAPACITY':>8} {'STATE':8}"]
    for w in sorted(found, key=lambda w: w.worker_id):
        state = "draining" if w.draining else "up"
        lines.append(f"{w.worker_id:32} {w.backend:10} {w.running:>7} {w.starting:>8} {w.warm:>5} {w.capacity:>8} {state:8}")
    by_status: dict[str, int] = {}
    for s in sessions:
        by_status[s.status] = by_status.get(s.status, 0) + 1
    lines += ["", "sessions by status: " + (", ".join(f"{k}={v}" for k, v in sorted(by_status.items())) or "none"), ""]
    lines.append(f"{'SESSION':28} {'WORKER':32} {'STATUS':9} LABELS")
    for s in sorted(sessions, key=lambda s: s.created_at)[-30:]:
        labels = ",".join(f"{k}={v}" for k, v in s.labels.items())
        lines.append(f"{s.session_id:28} {s.worker_id:32} {s.status:9} {labels}")
    return "\n".join(lines) + "\n"


@cli.command()
def schema() -> None:
    """Print the JSON Schema of every action, observation and control message."""
    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@nats_option
@click.option("--actions", "n_actions", default=1000, show_default=True, help="Round trips to time")
@click.option("--sessions", "n_sessions", default=20, show_default=True, help="Sessions to create for create->ready")
@click.option("--parallel", default=4, show_default=True, help="Sessions driven at once for the throughput run")
@click.option("--backend", default=None)
@click.option("--embedded", is_flag=True, help="Start a private `corral up` in a separate process and measure that")
@click.option("--workers", "worker_counts", default=None,
              help="Comma-separated worker counts (e.g. 1,2,4): measure scaling, one private deployment each")
@click.option("--density", default=0, show_default=True, help="Also start N idle sandboxes and report executor RSS")
@click.option("--ipython", is_flag=True, help="Measure the jupyter plugin instead: cells, first cell, idle cost")
@click.option("--browser", is_flag=True, help="Measure the browser plugin and forwarded ports instead")
@click.option("--mcp", "mcp_", is_flag=True, help="Measure MCP calls instead: stdio in the sandbox, streamable HTTP "
              "(--embedded: a private local deployment in this process)")
@click.option("--secure", is_flag=True, help="Compare the echo round trip through a private open deployment, a "
              "--secure one (as a tenant's client) and, with openssl, one with TLS too")
@click.option("--security", "security_", is_flag=True, help="Measure what the security gate adds to cmd_run instead "
              "(two private deployments, with and without it)")
@click.option("--audit", "audit_", is_flag=True, help="Measure the audit writer instead (records/s, without and with "
              "signatures; --actions events, in a private broker)")
@click.option("--remote", "remote_", is_flag=True, help="Compare echo hi over a remote executor's TCP+TLS (and plain "
              "TCP) channel with the local backend's Unix socket (executors started here, on loopback)")
@click.option("--swerex", "swerex_", is_flag=True, help="Compare SWE-ReX's RemoteRuntime (a local swerex-remote) "
              "with CorralRuntime (a private corral up, --backend) on run_in_session('echo hi')")
@click.option("--kubernetes", "kubernetes_", is_flag=True, help="Measure the kubernetes backend instead: cold pod "
              "create, echo over the port-forward, the API server's exec (--kubeconfig, --namespace)")
@click.option("--minisweagent", "minisweagent_", is_flag=True, help="Compare mini-swe-agent's LocalEnvironment / "
              "DockerEnvironment with CorralEnvironment (private local and docker deployments) on echo hi")
@click.option("--openhands", "openhands_", is_flag=True, help="Compare OpenHands' LocalRuntime with CorralRuntime for "
              "CmdRunAction('echo hi') (300 calls each, in .venv-openhands: Python 3.12)")
@click.option("--json", "as_json", is_flag=True)
@kubernetes_options
def bench(nats_url: str, n_actions: int, n_sessions: int, parallel: int, backend: str | None, embedded: bool,
          worker_counts: str | None, density: int, ipython: bool, browser: bool, mcp_: bool, secure: bool, security_: bool,
          audit_: bool, remote_: bool, kubernetes_: bool, swerex_: bool, minisweagent_: bool, openhands_: bool,
          as_json: bool, kubeconfig: str | None, namespace: str) -> None:
    """Measure round trips and session starts against a running corral (see README)."""
    from .bench import BenchConfig, run_bench, run_browser_bench, run_ipython_bench, run_scaling

    config = BenchConfig(nats_url=nats_url, actions=n_actions, sessions=n_sessions, parallel=parallel,
                         backend=backend, embedded=embedded, as_json=as_json, density=density)
    if openhands_:
        from ._bench_openhands import run_from_cli

        raise SystemExit(run_from_cli(300, as_json))  # LocalRuntime takes ~0.6 s a call
    if secure:
        from ._bench_secure import print_secure, secure_bench

        results = run_cli(secure_bench(backend, min(n_actions, 2000)))
        if as_json:
            print(json.dumps(results, indent=2))
        else:
            print_secure(results)
    elif ipython:
        run_cli(run_ipython_bench(config))
    elif browser:
        run_cli(run_browser_bench(config))
    elif mcp_:
        from ._bench_mcp import mcp_bench

        print(json.dumps(run_cli(mcp_bench(None if embedded else nats_url, calls=min(n_actions, 500), backend=backend)), indent=2))
    elif security_:
        from ._bench_security import print_report, security_bench

        result = run_cli(security_bench(n_actions, backend))
        print(json.dumps(result, indent=2)) if as_json else print_report(result)
    elif remote_:
        from ._bench_remote import print_remote, remote_bench

        result = run_cli(remote_bench(min(n_actions, 5000)))
        print(json.dumps(result, indent=2)) if as_json else print_remote(result)
    elif swerex_:
        from ._bench_swerex import print_swerex, swerex_bench

        result = run_cli(swerex_bench(min(n_actions, 5000), backend))
        print(json.dumps(result, indent=2)) if as_json else print_swerex(result)
    elif kubernetes_:
        from ._bench_kubernetes import bench_kubernetes

        print(json.dumps(run_cli(bench_kubernetes(kubeconfig=kubeconfig, namespace=namespace,
                                                  round_trips=min(n_actions, 1000))), indent=2))
    elif minisweagent_:
        from ._bench_minisweagent import minisweagent_bench, print_minisweagent

        result = run_cli(minisweagent_bench(max(300, min(n_actions, 2000))))
        print(json.dumps(result, indent=2)) if as_json else print_minisweagent(result)
    elif audit_:
        from ._bench_audit import audit_bench

        print(json.dumps(run_cli(audit_bench(n_actions)), indent=2))
    elif worker_counts:
        counts = [int(n) for n in worker_counts.split(",") if n.strip()]
        run_cli(run_scaling(config, counts))
    else:
        run_cli(run_bench(config))


# --- corral image: sandbox images built locally and offline (package `images`) ---------------

from ._audit_cmd import audit  # noqa: E402
from ._batch_cmd import batch  # noqa: E402
from ._image_cmd import image  # noqa: E402
from ._mcp_cmd import mcp, mcp_bridge  # noqa: E402
from ._mcp_serve import mcp_serve  # noqa: E402
from ._skills_cmd import skills  # noqa: E402
from ._tenant_cmd import secure, tenant  # noqa: E402
from ._vscode_cmd import vscode  # noqa: E402

cli.add_command(audit)
cli.add_command(batch)
cli.add_command(image)
cli.add_command(security)
add_session_confirm(session)
cli.add_command(skills)
cli.add_command(tenant)
cli.add_command(secure)
cli.add_command(vscode)
cli.add_command(mcp)
cli.add_command(mcp_bridge)
cli.add_command(mcp_serve)


def main() -> None:
    cli(prog_name="corral")


if __name__ == "__main__":
    main()


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_(as_json: bool) -> None:
    """The in-sandbox plugins installed (entry points corral.plugins): what each serves, what it
    requires, the image variant a Docker sandbox needs for it, and whether this host's Python can
    serve it (local sandboxes)."""
    from executor.plugins import CORE, PLUGINS, PluginUnavailable, check_available

    rows = []
    for name in PLUGINS.names():
        cls = PLUGINS.get(name)
        try:
            check_available([name]) if name not in CORE else None
            here = "yes"
        except PluginUnavailable as exc:
            here = f"no: needs {exc.missing}"
        rows.append({"name": name, "kinds": sorted(cls.kinds), "requires": list(cls.requires),
                     "variant": cls.variant, "core": name in CORE, "available_here": here})
    if as_json:
        print_json(rows)
        return
    click.echo(f"{'plugin':14} {'kinds':22} {'requires':10} {'image variant':14} here")
    for row in rows:
        variant = "(core)" if row["core"] else row["variant"] or "-"
        click.echo(f"{row['name']:14} {','.join(row['kinds']) or '-':22} {','.join(row['requires']) or '-':10} "
                   f"{variant:14} {row['available_here']}")
