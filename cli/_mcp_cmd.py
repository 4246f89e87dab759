"""``corral mcp ls|call``, ``corral mcp-serve`` and ``corral mcp-bridge``.

The MCP bridge runs inside every worker (``corral up``, ``corral worker --mcp-config``): stdio
servers must be started through the worker's private channel to the sandbox, and the worker's
outbox is what publishes every action's one durable answer. ``corral mcp-bridge`` therefore
serves nothing itself: it checks a config the way a worker will use it (parse, merge with
``CORRAL_MCP_CONFIG``) and opens every SSE / streamable-HTTP server from this host to list its
tools, exiting non-zero when one fails. No second process ever answers an MCP action.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from protocol import Error, McpResult, McpText, McpTools

from ._common import nats_option, print_json, run_cli, with_client

mcp_config_option = click.option(
    "--mcp-config", "mcp_config", default=None, type=click.Path(exists=True, dir_okay=False),
    help="MCP servers every session gets (TOML or JSON; merged with CORRAL_MCP_CONFIG and the spec's mcp)")


def load_mcp_config(path: str | None) -> Any:
    """The worker's MCP config from ``--mcp-config`` and the environment; a bad one stops the command."""
    from actors.mcp import McpConfigError, host_config

    try:
        return host_config(path)
    except (McpConfigError, OSError) as exc:
        raise click.ClickException(f"invalid_spec: {exc}") from None


@click.group()
def mcp() -> None:
    """List and call the MCP tools of a session."""


@mcp.command("ls")
@nats_option
@click.option("--session", "session_id", required=True)
@click.option("--server", default=None, help="Only this server's tools")
@click.option("--json", "as_json", is_flag=True)
def mcp_ls(nats_url: str, session_id: str, server: str | None, as_json: bool) -> None:
    """The tools of the session's MCP servers."""
    async def ls(client: Any) -> Any:
        session = await client.attach(session_id)
        try:
            return await session.mcp_list(server=server)
        finally:
            await session.detach()

    found = with_client(nats_url, ls)
    if as_json:
        return print_json(found)
    if isinstance(found, Error):
        raise click.ClickException(f"{found.code}: {found.message}")
    assert isinstance(found, McpTools)
    for tool in found.tools:
        hint = " (read-only)" if tool.annotations and tool.annotations.read_only_hint else ""
        click.echo(f"{tool.server:16} {tool.name:28} {tool.description.splitlines()[0] if tool.description else ''}{hint}")
    for problem in found.unavailable:
        click.echo(f"{problem.server:16} unavailable: {problem.code}: {problem.message}", err=True)


@mcp.command("call")
@nats_option
@click.option("--session", "session_id", required=True)
@click.option("--server", default=None, help="Needed when two servers offer the tool")
@click.option("--timeout", "timeout_s", type=float, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the whole mcp_result")
@click.argument("tool")
@click.argument("arguments", default="{}")
def mcp_call(nats_url: str, session_id: str, server: str | None, timeout_s: float | None, as_json: bool,
             tool: str, arguments: str) -> None:
    """Call TOOL with ARGUMENTS (a JSON object); prints its text content, exits 1 when the tool failed."""
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"ARGUMENTS must be a JSON object: {exc}") from None
    if not isinstance(args, dict):
        raise click.BadParameter("ARGUMENTS must be a JSON object")

    async def call(client: Any) -> Any:
        session = await client.attach(session_id)
        try:
            return await session.mcp_call(tool, args, server=server, **({"timeout_s": timeout_s} if timeout_s else {}))
        finally:
            await session.detach()

    result = with_client(nats_url, call)
    if as_json:
        print_json(result)
    elif isinstance(result, McpResult):
        for block in result.content:
            click.echo(block.text if isinstance(block, McpText) else json.dumps({"type": type(block).__name__}))
    if isinstance(result, Error):
        raise click.ClickException(f"{result.code}: {result.message}")
    sys.exit(1 if result.is_error else 0)


@click.command("mcp-bridge")
@mcp_config_option
def mcp_bridge(mcp_config: str | None) -> None:
    """Check an MCP config as workers will use it, and reach its network servers from here."""
    config = load_mcp_config(mcp_config)
    for server in config.stdio_servers:
        click.echo(f"{server.name:16} stdio  {server.command} {' '.join(server.args)}  (runs inside each sandbox)")
    sys.exit(run_cli(_probe_network(config)))


async def _probe_network(config: Any) -> int:
    from actors.mcp import McpBridge
    from protocol import McpList

    bridge = McpBridge(config)
    bridge.open_session("probe", {}, stdio=None)
    failed = 0
    try:
        for server in [*config.sse_servers, *config.shttp_servers]:
            listed = await bridge.list("probe", McpList(id="probe", server=server.name))
            if isinstance(listed, McpTools) and not listed.unavailable:
                click.echo(f"{server.name:16} {server.url}  {len(listed.tools)} tools: "
                           + ", ".join(t.name for t in listed.tools))
            else:
                failed += 1
                problems = listed.unavailable if isinstance(listed, McpTools) else []
                click.echo(f"{server.name:16} {server.url}  FAILED: " + "; ".join(p.message for p in problems), err=True)
    finally:
        await bridge.aclose()
    return 1 if failed else 0
