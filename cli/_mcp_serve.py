"""``corral mcp-serve``: a corral session as an MCP server, so any MCP client can drive a sandbox.

Tools ``run_command``, ``read_file``, ``write_file``, ``edit_file`` (the str_replace editor) and,
when the session has the jupyter plugin, ``run_ipython``. Each tool call is one action published
through the SDK's ``Session``: durable in the stream, seen by the audit writer, answered once.
A corral error becomes the tool's ``is_error`` result with the error's code in its text.

With ``--session ID`` it drives that session and leaves it open; otherwise it creates one from
``--spec`` and closes it when the MCP client disconnects (stdio: stdin closes) or the server stops.
"""

from __future__ import annotations

from typing import Any, Literal

import click
import msgspec

from protocol import (
    Client,
    CmdOutput,
    Error,
    FileContent,
    FileEdited,
    FileWritten,
    IPythonOutput,
    SessionSpec,
    Session,
)

from ._common import nats_option, run_cli

NAME = "corral"


def build_server(session: Session, *, ipython: bool) -> Any:
    """The MCP server of one session (the SDK's ``MCPServer``)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations

    server = MCPServer(NAME, instructions=f"A corral sandbox (session {session.session_id}): run commands, "
                                          "read, write and edit its files.")

    def answer(obs: Any) -> str:
        if isinstance(obs, Error):
            raise ToolError(f"{obs.code}: {obs.message}")
        return obs

    @server.tool(annotations=ToolAnnotations(destructive_hint=True))
    async def run_command(command: str, timeout: float | None = None, is_input: bool = False) -> str:
        """Run a bash command in the sandbox's main shell (state persists). With is_input, send the text
        (or C-c, C-d, C-z) to the command still running instead."""
        out: CmdOutput = answer(await session.cmd(command, timeout_s=timeout, is_input=is_input))
        tail = f"\n[exit code {out.exit_code}, cwd {out.working_dir}]" if out.status == "completed" else \
            f"\n[{out.status}] {out.hint or ''}"
        return out.content + tail

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def read_file(path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Read a text file of the sandbox (lines start_line..end_line, 1-based, when given)."""
        fields = {k: v for k, v in (("start_line", start_line), ("end_line", end_line)) if v is not None}
        out: FileContent = answer(await session.read_file(path, **fields))
        return out.content

    @server.tool()
    async def write_file(path: str, content: str) -> str:
        """Write a file of the sandbox (parents created, replaced atomically)."""
        out: FileWritten = answer(await session.write_file(path, content))
        return f"wrote {out.size} bytes to {out.path}"

    @server.tool()
    async def edit_file(command: Literal["view", "create", "str_replace", "insert", "undo_edit"], path: str,
                        file_text: str | None = None, old_str: str | None = None, new_str: str | None = None,
                        insert_line: int | None = None, view_range: list[int] | None = None) -> str:
        """The str_replace editor: view, create, str_replace, insert, undo_edit."""
        fields = {k: v for k, v in (("file_text", file_text), ("old_str", old_str), ("new_str", new_str),
                                    ("insert_line", insert_line), ("view_range", view_range)) if v is not None}
        out: FileEdited = answer(await session.edit(command, path, **fields))
        return out.content

    if ipython:
        @server.tool()
        async def run_ipython(code: str, timeout: float | None = None) -> str:
            """Run a cell in the session's IPython kernel (state persists between cells)."""
            out: IPythonOutput = answer(await session.ipython(code, timeout_s=timeout))
            return out.content + (f"\n{out.traceback}" if out.traceback else "")

    return server


async def serve(nats_url: str, session_id: str | None, spec: SessionSpec, transport: str, host: str, port: int) -> None:
    async with await Client.connect(nats_url) as client:
        if session_id:
            session = await client.attach(session_id)
            info = await client.get_session(session_id)
        else:
            session = await client.create_session(**msgspec.structs.asdict(spec))
            info = session.info
        ipython = any(p.name == "jupyter" for p in info.plugins)
        server = build_server(session, ipython=ipython)
        try:
            if transport == "stdio":
                await server.run_stdio_async()
            else:
                await server.run_streamable_http_async(host=host, port=port)
        finally:
            await (session.detach() if session_id else session.close())


@click.command("mcp-serve")
@nats_option
@click.option("--session", "session_id", default=None, help="Drive this session (default: create one, closed at the end)")
@click.option("--spec", "spec_json", default=None, help="The session to create, as JSON (SessionSpec)")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="With --transport http")
@click.option("--port", default=8765, show_default=True, help="With --transport http: streamable HTTP at /mcp")
def mcp_serve(nats_url: str, session_id: str | None, spec_json: str | None, transport: str, host: str, port: int) -> None:
    """Expose a corral session as an MCP server (stdio, or streamable HTTP)."""
    try:
        spec = msgspec.json.decode(spec_json or "{}", type=SessionSpec)
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"--spec: {exc}") from None
    if session_id and spec_json:
        raise click.BadParameter("--spec creates a session; --session drives an existing one: give one of them")
    run_cli(serve(nats_url, session_id, spec, transport, host, port))



