"""``--security-config`` / ``--security-rules`` / ``--no-security`` of ``corral up`` and ``corral
worker``, ``corral security check`` (what the analyzers say of an action, without a sandbox), and
``corral session confirm``."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any, Callable

import click
import msgspec

from ._common import nats_option, print_json, with_client


def security_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--security-config", "security_config", default=None, envvar="CORRAL_SECURITY_CONFIG",
                  type=click.Path(exists=True, dir_okay=False),
                  help="The deployment's security analyzers, rules and policy (TOML or JSON; env CORRAL_SECURITY_CONFIG)")
    @click.option("--security-rules", "security_rules", multiple=True, type=click.Path(exists=True, dir_okay=False),
                  help="A TOML file of [[rules]] added to the default rules; repeatable")
    @click.option("--no-security", "no_security", is_flag=True,
                  help="Run actions without the security gate (trusted, benchmark-only deployments)")
    @functools.wraps(fn)
    def wrapper(*args: Any, security_config: str | None, security_rules: tuple[str, ...], no_security: bool,
                **kwargs: Any) -> Any:
        return fn(*args, security=load_security(security_config, security_rules, no_security), **kwargs)
    return wrapper


def load_security(path: str | None, rules: tuple[str, ...] = (), disabled: bool = False) -> Any:
    """The deployment's ``SecurityConfig``, checked as a worker will enforce it; a bad one stops the command."""
    from workers.security import Security, SecurityConfig, SecurityConfigError, load_security_config

    try:
        config = load_security_config(path) if path else SecurityConfig()
        config = msgspec.structs.replace(config, rules_files=[*config.rules_files, *map(os.path.abspath, rules)],
                                         enabled=config.enabled and not disabled)
        Security(config)
    except SecurityConfigError as exc:
        raise click.ClickException(f"invalid_spec: {exc}") from None
    return config


@click.group()
def security() -> None:
    """Security analyzers: try the rules on a command, path or URL."""


@security.command("check")
@click.option("--security-config", "security_config", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--security-rules", "security_rules", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", default="cmd_run", show_default=True,
              type=click.Choice(["cmd_run", "ipython_run", "file_read", "file_write", "file_edit", "browse_url",
                                 "browse_interactive"]))
@click.option("--json", "as_json", is_flag=True)
@click.argument("text")
def security_check(security_config: str | None, security_rules: tuple[str, ...], kind: str, as_json: bool, text: str) -> None:
    """What the deployment's analyzers say of one action: TEXT is the command (or code, path, URL,
    browser script). Exit code 0 allow, 1 confirm, 2 block."""
    from protocol import ACTION_KINDS, decode_action
    from workers.security import Security, SecurityConfig

    field = {"cmd_run": "command", "ipython_run": "code", "browse_url": "url", "browse_interactive": "browser_actions"}
    body: dict[str, Any] = {"kind": kind, "id": "check", field.get(kind, "path"): text}
    if kind == "file_write":
        body["content"] = ""
    if kind == "file_edit":
        body["command"] = "create"
    assert kind in ACTION_KINDS
    action = decode_action(json.dumps(body).encode(), json=True)
    config = load_security(security_config, security_rules)
    sec = Security(config if config.enabled else SecurityConfig())

    async def main() -> Any:
        from workers.backends import SandboxHandle
        from workers.session import SessionContext
        from executor.client import ExecutorClient
        from protocol import SessionSpec

        handle = SandboxHandle(sandbox_id="check", session_id="check", worker_id="check", backend="check", key="")
        ctx = SessionContext(session_id="check", spec=SessionSpec(), handle=handle, client=ExecutorClient(key="", host="127.0.0.1", port=1))
        gate = sec.gate(ctx)
        try:
            findings = await gate.findings(action, ctx)
        finally:
            await gate.aclose()
            await sec.aclose()
        worst = gate.policy.worst(findings) if findings else None
        return findings, worst, gate.policy.decide(worst.risk) if worst else "allow"

    findings, worst, decision = asyncio.run(main())
    if as_json:
        print_json({"decision": decision, "finding": worst, "findings": findings})
    else:
        for f in findings:
            click.echo(f"{f.analyzer:10} {f.risk:8} {f.reason}")
        click.echo(f"decision: {decision}")
    raise SystemExit({"allow": 0, "confirm": 1, "block": 2}[decision])


def add_session_confirm(session: click.Group) -> None:
    @session.command("confirm")
    @nats_option
    @click.argument("session_id")
    @click.argument("action_id")
    @click.option("--reject", is_flag=True, help="Reject the held action instead of releasing it")
    @click.option("--by", default=lambda: os.environ.get("USER", ""), help="Who decides (recorded in the answer; default $USER)")
    def session_confirm(nats_url: str, session_id: str, action_id: str, reject: bool, by: str) -> None:
        """Release (or --reject) ACTION_ID, held for confirmation in SESSION_ID (confirmation_required)."""
        from protocol import ConfirmResult

        async def confirm(client: Any) -> Any:
            s = await client.attach(session_id)
            try:
                return await s.confirm(action_id, approve=not reject, by=by)
            finally:
                await s.detach()

        result = with_client(nats_url, confirm)
        if not isinstance(result, ConfirmResult):
            raise click.ClickException(f"{result.code}: {result.message}")
        click.echo(f"{action_id} {'approved' if result.approved else 'rejected'}")
