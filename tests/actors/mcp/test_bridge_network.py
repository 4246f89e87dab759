"""The bridge alone against SSE and streamable-HTTP servers (built with the SDK's server API, on
loopback): a server that goes away fails calls with a code, and one that comes back is used again."""

from __future__ import annotations

import asyncio
from pathlib import Path
import socket
import sys

import pytest

from actors.mcp import McpBridge
from protocol import Error, McpCall, McpResult, codes

pytestmark = pytest.mark.timeout(120)

SERVERS = str(Path(__file__).parent / "servers.py")


async def start(transport: str, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, SERVERS, "--transport", transport, "--port", str(port),
                                                stderr=asyncio.subprocess.DEVNULL)
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"the {transport} server did not listen")


@pytest.mark.parametrize("transport, path, kind", [("sse", "/sse", "sse_servers"),
                                                   ("streamable-http", "/mcp", "shttp_servers")])
async def test_a_network_server_that_goes_away_is_an_error_and_is_used_again_when_back(transport, path, kind):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await start(transport, port)
    bridge = McpBridge()
    bridge.open_session("s", {kind: [{"name": "net", "url": f"http://127.0.0.1:{port}{path}"}]}, stdio=None)
    try:
        assert isinstance(await bridge.call("s", McpCall(id="1", tool="echo", arguments={"text": "a"})), McpResult)
        proc.kill()
        await proc.wait()
        gone = await bridge.call("s", McpCall(id="2", tool="echo", arguments={"text": "a"}, timeout_s=10))
        assert isinstance(gone, Error) and gone.code in (codes.MCP_UNAVAILABLE, codes.MCP_SERVER_DIED), gone
        proc = await start(transport, port)
        back = await bridge.call("s", McpCall(id="3", tool="echo", arguments={"text": "b"}, timeout_s=10))
        assert isinstance(back, McpResult) and back.content[0].text == "b", back
        assert bridge.statistics("s") == {"net": 2}
    finally:
        await bridge.aclose()
        await bridge.aclose()  # idempotent
        proc.kill()
        await proc.wait()
