"""``corral mcp-serve``: the SDK's own MCP client drives a corral session over stdio and streamable
HTTP, and every tool call is an action in the session's audit stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
import socket
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
import pytest

from actors.audit import records
from protocol import Subjects

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = str(Path(__file__).parents[2])


async def audited_actions(client, session_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    found = []
    async for record in records(client.nats, Subjects(), session_id=session_id):
        if record.channel == "action":
            found.append(record.event)
    return found


def text(result) -> str:  # type: ignore[no-untyped-def]
    return "".join(block.text for block in result.content if block.type == "text")


async def drive(mcp_session: ClientSession, tmp_path: Path) -> None:
    await mcp_session.initialize()
    tools = {t.name for t in (await mcp_session.list_tools()).tools}
    assert tools == {"run_command", "read_file", "write_file", "edit_file"}
    out = await mcp_session.call_tool("run_command", {"command": "echo from-mcp"})
    assert "from-mcp" in text(out) and "[exit code 0" in text(out) and not out.is_error
    path = str(tmp_path / "note.txt")
    await mcp_session.call_tool("write_file", {"path": path, "content": "alpha\n"})
    await mcp_session.call_tool("edit_file", {"command": "str_replace", "path": path, "old_str": "alpha", "new_str": "beta"})
    assert text(await mcp_session.call_tool("read_file", {"path": path})) == "beta\n"
    missing = await mcp_session.call_tool("read_file", {"path": str(tmp_path / "nope")})
    assert missing.is_error and "file_not_found" in text(missing)


async def test_an_mcp_client_over_stdio_drives_a_session_it_creates_and_the_calls_are_audited(client, tmp_path):
    params = StdioServerParameters(command=sys.executable, args=["-m", "cli", "mcp-serve", "--nats", client.nats.connected_url.geturl()],
                                   env={"PYTHONPATH": ROOT}, cwd=ROOT)
    before = {s.session_id for s in await client.list_sessions()}
    async with stdio_client(params) as streams, ClientSession(*streams) as mcp_session:
        await drive(mcp_session, tmp_path)
        [created] = [s for s in await client.list_sessions() if s.session_id not in before]
    kinds = [(e["kind"], e.get("command")) for e in await audited_actions(client, created.session_id)]
    assert ("cmd_run", "echo from-mcp") in kinds and ("file_write", None) in kinds and ("file_edit", "str_replace") in kinds
    for _ in range(100):  # the session is closed once its MCP client went away
        if created.session_id not in {s.session_id for s in await client.list_sessions()}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the session mcp-serve created outlived its client")


async def test_an_mcp_client_over_streamable_http_drives_an_existing_session(client, session, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "mcp-serve", "--nats", client.nats.connected_url.geturl(), "--session",
        session.session_id, "--transport", "http", "--port", str(port), cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams, ClientSession(*streams) as mcp_session:
            await drive(mcp_session, tmp_path)
    finally:
        proc.terminate()
        await proc.wait()
    commands = [e.get("command") for e in await audited_actions(client, session.session_id)]
    assert "echo from-mcp" in commands
    assert (await session.cmd("echo still open")).content == "still open\n"


async def test_a_session_with_jupyter_also_offers_run_ipython(client):
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "cli", "mcp-serve", "--nats", client.nats.connected_url.geturl(), "--spec", '{"plugins": ["jupyter"]}'],
        env={"PYTHONPATH": ROOT}, cwd=ROOT)
    async with stdio_client(params) as streams, ClientSession(*streams) as mcp_session:
        await mcp_session.initialize()
        assert "run_ipython" in {t.name for t in (await mcp_session.list_tools()).tools}
        out = await mcp_session.call_tool("run_ipython", {"code": "x = 6\nx * 7"})
        assert text(out) == "42\n" and not out.is_error
