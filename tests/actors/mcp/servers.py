"""MCP servers for the tests, built with the SDK's server API (``MCPServer``).

    python servers.py [--transport stdio|sse|streamable-http] [--port P] [--name N] [--exit-on-start]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations


def build(name: str) -> MCPServer:
    server = MCPServer(name, log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str, times: int = 1) -> str:
        """Say it back."""
        return text * times

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def whoami() -> str:
        """The server's name, pid and working directory."""
        return f"{name} {os.getpid()} {os.getcwd()}"

    @server.tool()
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    def die() -> str:
        """Kill the server mid-call."""
        os._exit(7)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def crash_once(marker: str) -> str:
        """Kill the server the first time (leaving ``marker``), answer afterwards."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(9)
        return "survived"

    @server.tool()
    def failing() -> str:
        raise ValueError("the tool itself failed")

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="test")
    parser.add_argument("--exit-on-start", action="store_true")
    args = parser.parse_args()
    if args.exit_on_start:
        print("fatal: this server refuses to start (test)", file=sys.stderr)
        sys.exit(3)
    server = build(args.name)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run(args.transport, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
