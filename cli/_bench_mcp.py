"""``corral bench --mcp``: what an MCP tool call costs through corral.

Measures ``mcp_call`` round trips (SDK -> NATS -> worker -> bridge -> server -> back) of a trivial
tool (``echo``) over stdio, the server running inside the sandbox (its stdio carried by the
executor channel), and over streamable HTTP (a server on loopback, reached from the worker);
and the first call of a session, which pays for the client session's open (server start,
``initialize``, ``tools/list``) once per session, not per call. A ``cmd_run`` of ``true`` is the
baseline of the same path without MCP.

    python -m cli._bench_mcp [--calls N] [--nats URL]   (or `corral bench --mcp`, once wired)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
import socket
import statistics
import sys
import tempfile
import time
from typing import Any, AsyncIterator

ROOT = str(Path(__file__).resolve().parents[1])


def _serve(transport: str, port: int) -> None:
    """The benchmark's MCP server: one trivial tool, built with the SDK's server API."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        return text

    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def _http_server() -> AsyncIterator[int]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli._bench_mcp", "--serve", "http", "--port",
                                                str(port), cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(600):
            if proc.returncode is not None:
                raise RuntimeError(f"the benchmark's HTTP MCP server exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def _deployment(nats_url: str | None) -> AsyncIterator[str]:
    """The given corral, or a private local one (embedded broker, local backend, no warm pool)."""
    if nats_url:
        yield nats_url
        return
    from cli.up import Deployment, UpConfig

    with tempfile.TemporaryDirectory(prefix="corral-bench-mcp-") as data:
        async with Deployment(UpConfig(data_dir=data, nats_port=_free_port(), backend="local", audit=False,
                                       warm_pool=0)) as dep:
            yield dep.url


def _summary(first_ms: float, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"first_call_ms": round(first_ms, 2), "p50_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 3), "calls": len(ordered)}


async def _time_calls(session: Any, server: str, calls: int) -> dict[str, float]:
    from protocol import McpResult

    started = time.perf_counter()
    first = await session.mcp_call("echo", {"text": "x"}, server=server)
    first_ms = (time.perf_counter() - started) * 1000
    assert isinstance(first, McpResult), first
    samples = []
    for i in range(calls):
        t = time.perf_counter()
        out = await session.mcp_call("echo", {"text": str(i)}, server=server)
        samples.append((time.perf_counter() - t) * 1000)
        assert isinstance(out, McpResult) and not out.is_error, out
    return _summary(first_ms, samples)


async def mcp_bench(nats_url: str | None = None, *, calls: int = 200, backend: str | None = None) -> dict[str, Any]:
    """p50/p90 of a trivial MCP tool over stdio-in-the-sandbox and over streamable HTTP, the first
    call of each (session open included), and a ``cmd_run true`` baseline; all in milliseconds."""
    from protocol import Client

    async with _http_server() as port, _deployment(nats_url) as url, await Client.connect(url) as client:
        mcp = {"stdio_servers": [{"name": "stdio", "command": sys.executable,
                                  "args": ["-m", "cli._bench_mcp", "--serve", "stdio"], "env": {"PYTHONPATH": ROOT}}],
               "shttp_servers": [{"name": "shttp", "url": f"http://127.0.0.1:{port}/mcp"}]}
        spec: dict[str, Any] = {"mcp": mcp, **({"backend": backend} if backend else {})}
        async with await client.create_session(**spec) as session:
            result = {"stdio": await _time_calls(session, "stdio", calls),
                      "shttp": await _time_calls(session, "shttp", calls)}
            samples = []
            for _ in range(calls):
                t = time.perf_counter()
                await session.cmd("true")
                samples.append((time.perf_counter() - t) * 1000)
            result["cmd_run_p50_ms"] = round(statistics.median(samples), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--nats", default=None, help="A running corral (default: a private local one)")
    parser.add_argument("--serve", choices=["stdio", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve(args.serve, args.port)
    from ._common import configure_logging

    configure_logging("warning", False)
    print(json.dumps(asyncio.run(mcp_bench(args.nats, calls=args.calls)), indent=2))


if __name__ == "__main__":
    main()
