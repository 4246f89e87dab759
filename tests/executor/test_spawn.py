"""GET /v1/spawn: a process in the sandbox whose stdin/stdout is the upgraded connection."""

import asyncio
import json
import os
import sys

import pytest

from executor.client import ExecutorClient, ExecutorUnavailable, SpawnFailed


@pytest.fixture
async def client(tmp_path):
    sock = str(tmp_path / "e.sock")
    config = {"key": "k1", "workdir": str(tmp_path / "ws"), "output_dir": str(tmp_path / "out"), "socket_path": sock,
              "session_id": "s1", "env": {"FROM_SESSION": "yes"}}
    env = dict(os.environ, CORRAL_EXECUTOR_CONFIG=json.dumps(config))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "executor", env=env, stdout=asyncio.subprocess.PIPE)
    assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))["ready"]
    c = ExecutorClient(key="k1", socket_path=sock)
    yield c
    await c.aclose()
    proc.terminate()
    await proc.wait()


async def test_stdin_and_stdout_are_carried_both_ways_in_the_workdir_with_the_sessions_env(client, tmp_path):
    reader, writer, handle = await client.spawn_stdio(
        ["sh", "-c", 'pwd; echo "$FROM_SESSION $EXTRA"; while read line; do echo "got $line"; done'], {"EXTRA": "x"})
    assert handle.pid > 0 and handle.spawn_id
    assert await reader.readline() == f"{tmp_path / 'ws'}\n".encode()
    assert await reader.readline() == b"yes x\n"
    writer.write(b"one\n")
    assert await reader.readline() == b"got one\n"
    writer.close()


async def test_the_stderr_tail_is_readable_after_the_process_exited(client):
    reader, _, handle = await client.spawn_stdio(["sh", "-c", "echo first >&2; echo last >&2; exit 3"])
    assert await reader.read() == b""  # closed once the process is gone and its stderr read
    assert await handle.stderr_tail() == "first\nlast\n"


async def test_a_command_that_cannot_start_is_refused_with_the_reason(client):
    with pytest.raises(SpawnFailed, match="no-such-program"):
        await client.spawn_stdio(["no-such-program"])


async def test_closing_the_connection_kills_the_process_group(client):
    reader, writer, handle = await client.spawn_stdio(["sh", "-c", "sleep 300 & echo $!; wait"])
    child = int(await reader.readline())
    writer.close()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the spawned process's child outlived the connection")


async def test_a_wrong_key_is_refused(tmp_path, client):
    other = ExecutorClient(key="wrong", socket_path=client._socket_path)
    with pytest.raises((SpawnFailed, ExecutorUnavailable)):
        await other.spawn_stdio(["cat"])
