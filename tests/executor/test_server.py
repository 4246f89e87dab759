"""The executor process over its real HTTP channel: auth, health, claim, actions, bad bodies."""

import asyncio
import json
import os
import resource
import sys

import pytest

from executor.client import Claim, ExecutorClient, ExecutorUnavailable, exact_pid
from protocol import (
    CmdOutput,
    CmdRun,
    Error,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    FileWrite,
    FileWritten,
    codes,
    new_id,
)


@pytest.fixture
async def executor(tmp_path):
    sock = str(tmp_path / "e.sock")
    config = {"key": "k1", "workdir": str(tmp_path / "ws"), "output_dir": str(tmp_path / "out"), "socket_path": sock}
    env = dict(os.environ, CORRAL_EXECUTOR_CONFIG=json.dumps(config))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "executor", env=env,
                                                stdout=asyncio.subprocess.PIPE)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    assert ready["ready"] and ready["pid"] == proc.pid
    yield sock, proc
    proc.terminate()
    await proc.wait()


async def test_config_is_not_left_in_the_shell_environment(executor, tmp_path):
    sock, _ = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    await client.claim(Claim(session_id="s1"))
    out = [o async for o in client.execute(CmdRun(id="a", command="env | grep -c CORRAL_EXECUTOR_CONFIG"))][-1]
    assert out.content.strip() == "0"
    await client.aclose()


async def test_wrong_key_is_refused(executor):
    sock, _ = executor
    client = ExecutorClient(key="wrong", socket_path=sock)
    with pytest.raises(ExecutorUnavailable, match="401"):
        await client.health()
    await client.aclose()


async def test_actions_before_claim_are_refused_with_an_error(executor):
    sock, _ = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    obs = [o async for o in client.execute(CmdRun(id="a1", command="echo hi"))]
    assert isinstance(obs[-1], Error) and obs[-1].cause == "a1"
    await client.aclose()


async def test_claim_binds_the_session_once(executor, tmp_path):
    sock, _ = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    health = await client.claim(Claim(session_id="s1", env={"X": "1"}, workdir=str(tmp_path / "w2")))
    assert health.session_id == "s1"
    with pytest.raises(ExecutorUnavailable, match="409"):
        await client.claim(Claim(session_id="s2"))
    out = [o async for o in client.execute(CmdRun(id="a2", command="echo $X; pwd"))][-1]
    assert isinstance(out, CmdOutput) and out.content == f"1\n{tmp_path / 'w2'}\n" and out.session_id == "s1"
    await client.aclose()


async def test_keep_alive_connection_serves_many_requests(executor):
    sock, _ = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    await client.claim(Claim(session_id="s1"))
    for n in range(50):
        out = [o async for o in client.execute(FileWrite(id=new_id(), path=f"f{n}", content="x"))][-1]
        assert out.size == 1
    assert len(client._idle) == 1
    await client.aclose()


async def test_malformed_http_closes_only_that_connection(executor):
    sock, _ = executor
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(b"NONSENSE\r\n\r\n")
    assert await reader.read() == b""
    client = ExecutorClient(key="k1", socket_path=sock)
    assert (await client.health()).ok
    await client.aclose()


async def test_undecodable_action_body_is_bad_payload(executor):
    sock, _ = executor
    reader, writer = await asyncio.open_unix_connection(sock)
    body = b'{"kind": "cmd_run", "id": "j1"}'
    writer.write(b"POST /v1/action HTTP/1.1\r\nAuthorization: Bearer k1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
    obs = json.loads(await reader.readexactly(size))
    assert obs["kind"] == "error" and obs["code"] == codes.BAD_PAYLOAD and obs["cause"] == "j1"
    writer.close()


async def test_a_repeated_action_id_runs_once_even_across_clients(executor, tmp_path):
    sock, _ = executor
    first = ExecutorClient(key="k1", socket_path=sock)
    await first.claim(Claim(session_id="s1"))
    action = CmdRun(id="once", command="echo x >> /tmp/once-$PPID; sleep 0.3; wc -l < /tmp/once-$PPID")

    async def final(client):
        return [o async for o in client.execute(action)][-1]

    second = ExecutorClient(key="k1", socket_path=sock)  # e.g. a restarted worker
    a, b = await asyncio.gather(final(first), final(second))
    c = await final(second)
    assert a == b == c and a.content == "1\n"
    await first.aclose()
    await second.aclose()


async def raw_exchange(sock: str, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # the executor closes after a refused request; keep-alive otherwise
    writer.close()
    return answer


@pytest.mark.parametrize("head", [
    b"GET /v1/health HTTP/1.1\r\nX-Smuggled: a\nAuthorization: Bearer k1\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nX-Smuggled: a\rAuthorization: Bearer k1\r\n\r\n",
    b"GET /v1/health\x00 HTTP/1.1\r\nAuthorization: Bearer k1\r\n\r\n",
])
async def test_a_head_with_a_stray_cr_lf_or_nul_is_refused_unanswered(executor, head):
    sock, _ = executor
    assert await raw_exchange(sock, head) == b""


async def test_a_result_id_is_percent_decoded(executor):
    sock, _ = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    await client.claim(Claim(session_id="s1"))
    action = FileWrite(id="odd%41id?#&", path="f", content="x")
    written = [o async for o in client.execute(action)][-1]
    assert await client.result(action.id) == written
    await client.aclose()


@pytest.mark.parametrize("encoded", ["a%2Fb", "a%20b", "a%0D%0Ab", "%FF", "x" * 257])
async def test_a_result_id_that_is_not_a_valid_action_id_is_a_400(executor, encoded):
    sock, _ = executor
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(f"GET /v1/result/{encoded} HTTP/1.1\r\nAuthorization: Bearer k1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 400 ")


async def test_the_executor_is_the_listener_its_client_checks_for(executor):
    sock, proc = executor
    client = ExecutorClient(key="k1", socket_path=sock, peer_check=exact_pid(proc.pid))
    assert (await client.health()).pid == proc.pid
    await client.aclose()


def _vm_size(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lower another process's limits")
async def test_file_operations_work_when_the_sandbox_cannot_start_a_thread(executor, tmp_path):
    sock, proc = executor
    client = ExecutorClient(key="k1", socket_path=sock)
    await client.claim(Claim(session_id="s1"))
    # What a fork bomb leaves behind: no room for another thread (its stack is 8 MiB of address space).
    _, hard = resource.prlimit(proc.pid, resource.RLIMIT_AS)
    resource.prlimit(proc.pid, resource.RLIMIT_AS, (_vm_size(proc.pid) + 6 * 1024 * 1024, hard))
    try:
        written = [o async for o in client.execute(FileWrite(id="w", path="f.txt", content="still here\n"))][-1]
        read = [o async for o in client.execute(FileRead(id="r", path="f.txt"))][-1]
        viewed = [o async for o in client.execute(FileEdit(id="v", command="view", path=str(tmp_path / "ws" / "f.txt")))][-1]
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (hard, hard))
    assert isinstance(written, FileWritten) and written.size == 11
    assert isinstance(read, FileContent) and read.content == "still here\n"
    assert isinstance(viewed, FileEdited) and "still here" in viewed.content
    await client.aclose()
