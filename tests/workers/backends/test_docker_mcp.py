"""stdio MCP servers in Docker sandboxes (image variant ``mcp``, network ``none``): the executor
starts them inside the container, as its user, and carries their stdio over the private channel."""

from __future__ import annotations

import asyncio

import aiodocker
import pytest

from protocol import McpResult, McpText

from .test_docker import ENGINE, docker_deployment

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow, pytest.mark.timeout(600)]  # a first run builds the variant image

SERVERS = {"stdio_servers": [{"name": "time", "command": "mcp-server-time"},
                             {"name": "fetch", "command": "mcp-server-fetch",
                              "args": ["--ignore-robots-txt", "--allow-private-ips"]}]}


@pytest.fixture(scope="session")
def mcp_image() -> str:
    """The runtime image with the ``mcp`` variant, built once per test session (reused when present)."""
    from images import ensure_runtime_image

    async def ensure() -> str:
        async with aiodocker.Docker() as docker:
            return await ensure_runtime_image(docker, variants=("mcp",))
    return asyncio.run(ensure())


@pytest.fixture
async def client(nats_server, tmp_path, mcp_image):
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), mcp_image, prefix="wm") as c:
        yield c


def text(result: object) -> str:
    assert isinstance(result, McpResult), result
    return "".join(c.text for c in result.content if isinstance(c, McpText))


async def test_stdio_servers_run_inside_a_container_without_network(client):
    async with await client.create_session(mcp=SERVERS, network="none") as s:
        now = await s.mcp_call("get_current_time", {"timezone": "Europe/Paris"})
        assert now.structured_content["timezone"] == "Europe/Paris", now
        who = await s.cmd("python3 -c \"import os; print(sorted({os.stat(f'/proc/{p}').st_uid for p in os.listdir('/proc') "
                          "if p.isdigit() and b'mcp-server-time' in open(f'/proc/{p}/cmdline', 'rb').read()}))\"")
        assert who.content.strip() == "[1000]", who  # the sandbox's user, not root
        await s.write_file("/workspace/site/index.html", "<html><body><h1>Inside the box</h1></body></html>")
        await s.cmd("cd /workspace/site && (python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &) && "
                    "for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8123))' "
                    "2>/dev/null && break; sleep 0.1; done")
        page = text(await s.mcp_call("fetch", {"url": "http://127.0.0.1:8123/"}))
        assert "Inside the box" in page
        outside = await s.mcp_call("fetch", {"url": "http://example.com/"})
        assert outside.is_error  # network none: the server in the sandbox cannot reach out


async def test_the_pypi_git_server_in_a_container_sees_the_sandboxs_repository(client):
    spec = {"stdio_servers": [{"name": "git", "command": "mcp-server-git"}]}
    async with await client.create_session(mcp=spec, network="none") as s:
        made = await s.cmd("git init -q /workspace/repo && cd /workspace/repo && git config user.email t@t && "
                           "git config user.name t && echo one > a.txt && git add a.txt && git commit -qm 'in the box' && "
                           "echo two >> a.txt")
        assert made.exit_code == 0, made
        assert "in the box" in text(await s.mcp_call("git_log", {"repo_path": "/workspace/repo"}))
        assert "+two" in text(await s.mcp_call("git_diff_unstaged", {"repo_path": "/workspace/repo"}))


async def test_a_session_naming_stdio_servers_gets_the_mcp_image_when_the_worker_picks(nats_server, tmp_path, mcp_image):
    spec = {"stdio_servers": [{"name": "time", "command": "mcp-server-time"}]}
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), None, prefix="wa") as c:
        async with await c.create_session(mcp=spec) as s:
            now = await s.mcp_call("get_current_time", {"timezone": "UTC"})
            assert isinstance(now, McpResult) and now.structured_content["timezone"] == "UTC", now
