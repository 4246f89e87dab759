"""stdio MCP servers in bubblewrap sandboxes: the PyPI servers' packages carried in the runtime copy,
run by their entry points as the unprivileged sandbox user, seeing the sandbox's workspace."""

from __future__ import annotations

import shutil

import pytest

from actors.mcp import parse
from cli.up import Deployment, UpConfig
from protocol import Client, CmdOutput, McpResult, McpText
from workers.backends.bubblewrap import SANDBOX_UID

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.slow, pytest.mark.timeout(300)]  # a first run copies the servers' packages


@pytest.fixture
async def client(nats_server, tmp_path):
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="bubblewrap", audit=False)
    async with Deployment(config) as dep:
        async with await Client.connect(dep.url) as c:
            yield c


def text(result: object) -> str:
    assert isinstance(result, McpResult), result
    return "".join(c.text for c in result.content if isinstance(c, McpText))


async def test_the_pypi_time_server_runs_as_the_sandbox_user(client):
    spec = {"stdio_servers": [{"name": "time", "command": "mcp-server-time"}]}
    async with await client.create_session(mcp=spec) as s:
        assert s.info.backend == "bubblewrap"
        now = await s.mcp_call("get_current_time", {"timezone": "Europe/Paris"})
        assert isinstance(now, McpResult) and now.structured_content["timezone"] == "Europe/Paris", now
        who = await s.cmd("python3 -c \"import os; print(sorted({os.stat(f'/proc/{p}').st_uid for p in os.listdir('/proc') "
                          "if p.isdigit() and b'mcp-server-time' in open(f'/proc/{p}/cmdline', 'rb').read()}))\"")
        assert who.content.strip() == f"[{SANDBOX_UID}]", who


async def test_the_pypi_git_server_sees_the_sandboxs_repository(client):
    spec = {"stdio_servers": [{"name": "git", "command": "mcp-server-git"}]}
    async with await client.create_session(mcp=spec) as s:
        made = await s.cmd("git init -q /workspace/repo && cd /workspace/repo && git config user.email t@t && "
                           "git config user.name t && echo one > a.txt && git add a.txt && "
                           "git commit -qm 'in the bubble' && echo two >> a.txt")
        assert isinstance(made, CmdOutput) and made.exit_code == 0, made
        assert "in the bubble" in text(await s.mcp_call("git_log", {"repo_path": "/workspace/repo"}))
        assert "+two" in text(await s.mcp_call("git_diff_unstaged", {"repo_path": "/workspace/repo"}))


async def test_a_stdio_server_of_the_workers_own_config_runs_in_a_plain_session(nats_server, tmp_path):
    host = parse({"stdio_servers": [{"name": "time", "command": "mcp-server-time"}]})
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="bubblewrap", audit=False,
                      mcp=host)
    async with Deployment(config) as dep, await Client.connect(dep.url) as c:
        async with await c.create_session() as s:
            now = await s.mcp_call("get_current_time", {"timezone": "UTC"})
            assert isinstance(now, McpResult) and now.structured_content["timezone"] == "UTC", now
