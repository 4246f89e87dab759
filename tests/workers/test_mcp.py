"""MCP through whole local deployments: stdio servers started inside the sandbox by its executor
(PyPI's mcp-server-time / -git / -fetch, and our own SDK-built one), SSE and streamable-HTTP
servers on loopback, and every failure the bridge answers with a code."""

from __future__ import annotations

import asyncio
from pathlib import Path
import socket
import sys

import pytest

from actors.mcp import MCPConfig, parse
from cli.up import Deployment, UpConfig
from protocol import Client, CmdOutput, Error, McpResult, McpText, McpTools, RequestError, codes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVERS = str(Path(__file__).parents[1] / "actors" / "mcp" / "servers.py")


def ours(name: str, *extra: str) -> dict[str, object]:
    return {"name": name, "command": sys.executable, "args": [SERVERS, "--name", name, *extra]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def http_server(transport: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, SERVERS, "--transport", transport, "--port", str(port),
                                                "--name", transport, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(300):  # readiness: the port accepts (uvicorn binds once the app is built)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc, port
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{transport} server did not listen")


@pytest.fixture
async def network_servers():
    procs = [await http_server("sse"), await http_server("streamable-http")]
    yield {"sse": procs[0][1], "shttp": procs[1][1]}
    for proc, _ in procs:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def mcp_deployment(nats_server, tmp_path, network_servers):
    host = parse({"sse_servers": [{"name": "remote_sse", "url": f"http://127.0.0.1:{network_servers['sse']}/sse"}],
                  "shttp_servers": [{"name": "remote_http", "url": f"http://127.0.0.1:{network_servers['shttp']}/mcp",
                                     "timeout_s": 20}]})
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="local", audit=False,
                      warm_pool=0, mcp=host)
    async with Deployment(config) as dep:
        yield dep


@pytest.fixture
async def mcp_client(mcp_deployment):
    async with await Client.connect(mcp_deployment.url) as c:
        yield c


def text(result: McpResult | Error) -> str:
    assert isinstance(result, McpResult), result
    return "".join(c.text for c in result.content if isinstance(c, McpText))


def bridge(dep: Deployment):  # type: ignore[no-untyped-def]
    return dep.workers[0]._services["mcp"]


async def test_the_pypi_time_server_runs_in_the_sandbox_and_says_its_tool_is_read_only(mcp_client):
    spec = {"stdio_servers": [{"name": "time", "command": "mcp-server-time"}]}
    async with await mcp_client.create_session(mcp=spec) as s:
        listed = await s.mcp_list(server="time")
        assert isinstance(listed, McpTools), listed
        tools = {t.name: t for t in listed.tools}
        assert tools["get_current_time"].annotations.read_only_hint is True
        assert tools["get_current_time"].input_schema["required"] == ["timezone"]
        out = await s.mcp_call("get_current_time", {"timezone": "UTC"})
        assert out.structured_content["timezone"] == "UTC" and not out.is_error and out.server == "time"


async def test_the_pypi_git_server_sees_the_sandboxs_workspace(mcp_client, tmp_path):
    work = tmp_path / "ws"
    spec = {"stdio_servers": [{"name": "git", "command": "mcp-server-git"}]}
    async with await mcp_client.create_session(mcp=spec, workdir=str(work)) as s:
        made = await s.cmd("git init -q repo && cd repo && git config user.email t@t && git config user.name t && "
                           "echo one > a.txt && git add a.txt && git commit -qm 'first commit' && echo two >> a.txt")
        assert isinstance(made, CmdOutput) and made.exit_code == 0, made
        repo = str(work / "repo")
        assert "a.txt" in text(await s.mcp_call("git_status", {"repo_path": repo}))
        assert "first commit" in text(await s.mcp_call("git_log", {"repo_path": repo}))
        assert "+two" in text(await s.mcp_call("git_diff_unstaged", {"repo_path": repo}))


async def test_the_pypi_fetch_server_reads_a_page_served_inside_the_sandbox(mcp_client, tmp_path):
    port = free_port()
    spec = {"stdio_servers": [{"name": "fetch", "command": "mcp-server-fetch", "args": ["--ignore-robots-txt", "--allow-private-ips"]}]}
    async with await mcp_client.create_session(mcp=spec, workdir=str(tmp_path / "site")) as s:
        await s.write_file(str(tmp_path / "site" / "index.html"), "<html><body><h1>Corral page</h1><p>served here</p></body></html>")
        await s.cmd(f"python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &")
        await s.cmd(f"for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}))' "
                    "2>/dev/null && break; sleep 0.1; done")
        page = text(await s.mcp_call("fetch", {"url": f"http://127.0.0.1:{port}/"}))
        assert "Corral page" in page and "served here" in page


async def test_sse_and_streamable_http_servers_of_the_worker_are_called_from_the_bridge(mcp_client):
    async with await mcp_client.create_session() as s:
        listed = await s.mcp_list()
        assert {(t.server, t.name) for t in listed.tools} >= {("remote_sse", "echo"), ("remote_http", "echo")}
        assert text(await s.mcp_call("echo", {"text": "hi", "times": 2}, server="remote_sse")) == "hihi"
        assert text(await s.mcp_call("echo", {"text": "ho"}, server="remote_http")) == "ho"


async def test_a_tool_two_servers_offer_needs_its_server(mcp_client):
    async with await mcp_client.create_session() as s:
        out = await s.mcp_call("echo", {"text": "x"})
        assert isinstance(out, Error) and out.code == codes.AMBIGUOUS_TOOL, out
        assert "remote_sse" in out.message and "remote_http" in out.message
        assert text(await s.mcp_call("echo", {"text": "x"}, server="remote_http")) == "x"


async def test_unknown_tools_and_servers_are_unknown_tool(mcp_client):
    async with await mcp_client.create_session() as s:
        assert (await s.mcp_call("no_such_tool", {})).code == codes.UNKNOWN_TOOL
        assert (await s.mcp_call("echo", {"text": "x"}, server="nowhere")).code == codes.UNKNOWN_TOOL


async def test_arguments_are_checked_against_the_input_schema_before_the_call(mcp_client):
    async with await mcp_client.create_session() as s:
        out = await s.mcp_call("echo", {"times": "many"}, server="remote_http")
        assert isinstance(out, Error) and out.code == codes.INVALID_ARGUMENT, out
        assert "'text' is a required property" in out.message


async def test_a_server_that_exits_on_start_is_unavailable_with_its_stderr_and_others_work(mcp_client):
    spec = {"stdio_servers": [ours("broken", "--exit-on-start"), ours("fine")]}
    async with await mcp_client.create_session(mcp=spec) as s:
        out = await s.mcp_call("whoami", {}, server="broken")
        assert isinstance(out, Error) and out.code == codes.MCP_UNAVAILABLE, out
        assert "this server refuses to start" in out.message
        listed = await s.mcp_list()
        assert [p.server for p in listed.unavailable] == ["broken"]
        assert text(await s.mcp_call("whoami", {}, server="fine")).startswith("fine ")


async def test_a_server_killed_between_calls_is_restarted_for_the_next_call(mcp_client):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("victim")]}) as s:
        pid = text(await s.mcp_call("whoami", {}, server="victim")).split()[1]
        assert (await s.cmd(f"kill -9 {pid}")).exit_code == 0
        await asyncio.sleep(0.2)  # the executor notices the exit and closes the pipe
        again = text(await s.mcp_call("whoami", {}, server="victim"))
        assert again.split()[1] != pid


async def test_a_server_dying_mid_call_is_server_died_and_restarted_on_the_next_call(mcp_client):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("fragile")]}) as s:
        first = text(await s.mcp_call("whoami", {}, server="fragile"))
        died = await s.mcp_call("die", {}, server="fragile")
        assert isinstance(died, Error) and died.code == codes.MCP_SERVER_DIED, died
        assert text(await s.mcp_call("whoami", {}, server="fragile")).split()[1] != first.split()[1]


async def test_a_read_only_call_cut_short_by_the_servers_death_is_retried_once(mcp_client, tmp_path):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("flaky")]}) as s:
        out = await s.mcp_call("crash_once", {"marker": str(tmp_path / "crashed")}, server="flaky")
        assert text(out) == "survived" and out.retried


async def test_a_call_past_its_timeout_is_timeout_and_the_server_lives_on(mcp_client):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("sleepy")]}) as s:
        out = await s.mcp_call("slow", {"seconds": 30}, server="sleepy", timeout_s=1.0)
        assert isinstance(out, Error) and out.code == codes.TIMEOUT, out
        assert text(await s.mcp_call("echo", {"text": "awake"}, server="sleepy")) == "awake"


async def test_a_tool_that_raises_is_a_result_with_is_error(mcp_client):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("oops")]}) as s:
        out = await s.mcp_call("failing", {}, server="oops")
        assert isinstance(out, McpResult) and out.is_error and "failing" in text(out)


async def test_one_client_session_per_server_across_twenty_calls(mcp_client, mcp_deployment):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("counted")]}) as s:
        pids = {text(await s.mcp_call("whoami", {}, server="counted")).split()[1] for _ in range(10)}
        for i in range(10):
            assert text(await s.mcp_call("echo", {"text": str(i)}, server="remote_http")) == str(i)
        assert len(pids) == 1
        running = await s.cmd(f"pgrep -fc -- '{SERVERS} --name counted'")
        assert running.content.strip() == "1", running
        stats = bridge(mcp_deployment).statistics(s.session_id)
        assert stats["counted"] == 1 and stats["remote_http"] == 1


async def test_a_clash_or_an_unknown_key_in_the_spec_is_invalid_spec_naming_the_field(mcp_client):
    with pytest.raises(RequestError) as clash:
        await mcp_client.create_session(mcp={"stdio_servers": [{"name": "remote_http", "command": "x"}]})
    assert clash.value.code == codes.INVALID_SPEC and "mcp.stdio_servers[0].name" in clash.value.message
    with pytest.raises(RequestError) as unknown:
        await mcp_client.create_session(mcp={"stdio_servers": [{"name": "a", "command": "x", "cmd": "y"}]})
    assert unknown.value.code == codes.INVALID_SPEC and "cmd" in unknown.value.message


async def test_the_cli_lists_and_calls_a_sessions_tools(mcp_client, mcp_deployment):
    async with await mcp_client.create_session(mcp={"stdio_servers": [ours("cli")]}) as s:
        async def corral(*args: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", "mcp", *args, "--nats", mcp_deployment.url,
                                                        "--session", s.session_id, cwd=str(Path(SERVERS).parents[3]),
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            return proc.returncode, out.decode() + err.decode()
        rc, listed = await corral("ls", "--server", "cli")
        assert rc == 0 and "echo" in listed and "(read-only)" in listed, listed
        rc, said = await corral("call", "--server", "cli", "echo", '{"text": "from the cli"}')
        assert rc == 0 and said.strip() == "from the cli", said
        rc, failed = await corral("call", "echo", '{"text": "x"}')
        assert rc == 1 and "ambiguous_tool" in failed, failed
