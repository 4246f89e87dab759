"""The worker's side of the executor channel against fake executors that misbehave.

Each fake is a real asyncio Unix server in this process; what it sends is what a hostile sandbox
could send. The client must refuse what is not its executor before sending a byte, refuse
oversize declarations before reading them, and time out stalls inside a message.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import shutil
import subprocess
from typing import Awaitable, Callable

import pytest

from executor import _http
from executor.client import (
    ChannelLimits,
    ExecutorClient,
    ExecutorImpostor,
    ExecutorUnavailable,
    PeerCred,
    ProtocolViolation,
    exact_pid,
    same_pid_namespace,
)
from protocol import CmdChunk, CmdOutput, CmdRun, encode

from . import peak_rss

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MiB = 1024 * 1024


class FakeExecutor:
    """A Unix-socket server running ``handler`` per connection, recording what it was sent."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self.connections = 0
        self.received: list[bytes] = []
        self.closed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeExecutor:
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), b"0"))
    await reader.readexactly(length)
    return head


async def until_eof(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\nTransfer-Encoding: chunked\r\n\r\n"


def final(action_id: str = "a") -> bytes:
    return encode(CmdOutput(id="o", cause=action_id, session_id="s", content="hi\n", status="completed", exit_code=0))


def client_for(path: str, **kw: object) -> ExecutorClient:
    return ExecutorClient(key="k", socket_path=path, **kw)  # type: ignore[arg-type]


async def run_action(client: ExecutorClient, action_id: str = "a") -> list[object]:
    return [obs async for obs in client.execute(CmdRun(id=action_id, command="echo hi"))]


# ------------------------------------------------------------------ what listens at the path


async def test_a_symlink_at_the_socket_path_is_refused_without_connecting(tmp_path):
    async def answer(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    async with FakeExecutor(str(tmp_path / "docker.sock"), answer) as victim:
        (tmp_path / "executor.sock").symlink_to(victim.path)
        client = client_for(str(tmp_path / "executor.sock"))
        with pytest.raises(ExecutorImpostor, match="is a symlink"):
            await client.health()
        assert victim.connections == 0


async def test_a_regular_file_at_the_socket_path_is_refused(tmp_path):
    (tmp_path / "executor.sock").write_text("")
    with pytest.raises(ExecutorImpostor, match="not a socket"):
        await client_for(str(tmp_path / "executor.sock")).health()


async def test_a_missing_socket_is_unavailable_not_an_impostor(tmp_path):
    with pytest.raises(ExecutorUnavailable) as info:
        await client_for(str(tmp_path / "executor.sock")).health()
    assert not isinstance(info.value, ExecutorImpostor)


async def test_a_refused_peer_is_sent_nothing(tmp_path):
    async def record(reader, writer):
        fake.received.append(await until_eof(reader))

    async with FakeExecutor(str(tmp_path / "executor.sock"), record) as fake:
        client = client_for(fake.path, peer_check=exact_pid(os.getpid() + 1_000_000))
        with pytest.raises(ExecutorImpostor, match=f"not the executor's pid {os.getpid() + 1_000_000}"):
            await client.health()
        await fake.closed.wait()
    assert fake.received == [b""]


async def test_the_peer_check_sees_the_listeners_credentials_once_per_connection(tmp_path):
    seen: list[PeerCred] = []

    def check(peer: PeerCred) -> None:
        seen.append(peer)

    async def keep_alive(reader, writer):
        while True:
            await read_request_head(reader)
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"ok": true}')

    async with FakeExecutor(str(tmp_path / "executor.sock"), keep_alive) as fake:
        client = client_for(fake.path, peer_check=check)
        for _ in range(3):
            assert (await client.health()).ok
        await client.aclose()
        await fake.closed.wait()
    assert seen == [PeerCred(os.getpid(), os.getuid(), os.getgid())]


def test_a_peer_check_needs_a_unix_socket():
    with pytest.raises(ValueError, match="socket_path"):
        ExecutorClient(key="k", port=1234, peer_check=exact_pid(1))


def test_same_pid_namespace_accepts_a_listener_beside_the_reference_process():
    neighbour = subprocess.Popen(["sleep", "60"])
    try:
        assert same_pid_namespace(neighbour.pid)(PeerCred(os.getpid(), 0, 0)) is None
    finally:
        neighbour.kill()
        neighbour.wait()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_same_pid_namespace_refuses_a_listener_outside_the_sandboxes_namespace():
    sandbox = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", "echo ready; exec sleep 60"],
                               stdout=subprocess.PIPE)
    try:
        assert sandbox.stdout is not None and sandbox.stdout.readline() == b"ready\n"
        (inside,) = Path(f"/proc/{sandbox.pid}/task/{sandbox.pid}/children").read_text().split()
        reason = same_pid_namespace(int(inside))(PeerCred(os.getpid(), 0, 0))
    finally:
        sandbox.kill()
        sandbox.wait()
    assert reason is not None and "not the sandbox's" in reason


def test_same_pid_namespace_needs_the_uid_for_an_invisible_listener():
    check_uid = same_pid_namespace(1, uid=1000)
    assert check_uid(PeerCred(0, 1000, 1000)) is None
    assert "uid 0, not 1000" in (check_uid(PeerCred(0, 0, 0)) or "")
    assert "not visible" in (same_pid_namespace(1)(PeerCred(0, 1000, 1000)) or "")


# ------------------------------------------------------------------ escaping


async def test_an_action_id_is_percent_encoded_in_the_request_line(tmp_path):
    lines: list[bytes] = []

    async def not_found(reader, writer):
        lines.append((await read_request_head(reader)).split(b"\r\n")[0])
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await until_eof(reader)

    hostile = "x HTTP/1.1\r\nHost: docker\r\n\r\nPOST /containers/create HTTP/1.1\r\n"
    async with FakeExecutor(str(tmp_path / "executor.sock"), not_found) as fake:
        client = client_for(fake.path)
        assert await client.result(hostile) is None
        await client.aclose()
        await fake.closed.wait()
    assert lines == [b"GET /v1/result/x%20HTTP%2F1.1%0D%0AHost%3A%20docker%0D%0A%0D%0APOST%20%2Fcontainers%2Fcreate"
                     b"%20HTTP%2F1.1%0D%0A HTTP/1.1"]


# ------------------------------------------------------------------ sizes


async def test_an_oversize_chunk_is_refused_at_its_declaration_and_memory_stays_flat(tmp_path):
    sent = 0

    async def flood(reader, writer):
        nonlocal sent
        await read_request_head(reader)
        writer.write(CHUNKED + b"%x\r\n" % (1024 * MiB))  # declares 1 GiB, then streams 600 MB of it
        block = b"x" * MiB
        while sent < 600 * MiB:
            writer.write(block)
            await writer.drain()
            sent += len(block)

    async with FakeExecutor(str(tmp_path / "executor.sock"), flood) as fake:
        client = client_for(fake.path)
        before = peak_rss.reset()
        with pytest.raises(ProtocolViolation, match=f"chunk of {1024 * MiB} bytes declared, over the {4 * MiB}-byte cap"):
            await run_action(client)
        grown_mb = peak_rss.grown_mb(before)
        await fake.closed.wait()
    assert grown_mb < 40, f"peak RSS grew by {grown_mb:.0f} MB"
    assert sent < 600 * MiB  # the client hung up instead of reading it


async def test_an_oversize_body_is_refused_at_its_declaration(tmp_path):
    async def huge(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1024 * MiB))
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), huge) as fake:
        with pytest.raises(ProtocolViolation, match="body of 1073741824 bytes declared"):
            await client_for(fake.path).health()


async def test_the_caps_are_parameters_of_the_client(tmp_path):
    async def answer(reader, writer):
        await read_request_head(reader)
        body = final()
        writer.write(CHUNKED + _http.chunk(body) + _http.LAST_CHUNK)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), answer) as fake:
        tight = client_for(fake.path, limits=ChannelLimits(max_chunk_bytes=len(final()) - 1))
        with pytest.raises(ProtocolViolation, match="over the"):
            await run_action(tight)
        roomy = client_for(fake.path, limits=ChannelLimits(max_chunk_bytes=len(final())))
        assert isinstance((await run_action(roomy))[-1], CmdOutput)
        await roomy.aclose()


@pytest.mark.parametrize("size_line", [b"zz\r\n", b"-1\r\n", b"1_0\r\n", b" 10\r\n", b"0x10\r\n", b"1" * 300 + b"\r\n"])
async def test_a_malformed_chunk_size_is_a_protocol_violation(tmp_path, size_line):
    async def bad(reader, writer):
        await read_request_head(reader)
        writer.write(CHUNKED + size_line)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), bad) as fake:
        with pytest.raises(ProtocolViolation, match="malformed chunk-size line"):
            await run_action(client_for(fake.path))


async def test_an_undecodable_observation_is_a_protocol_violation(tmp_path):
    async def garbage(reader, writer):
        await read_request_head(reader)
        writer.write(CHUNKED + _http.chunk(b"\xc1 not msgpack") + _http.LAST_CHUNK)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), garbage) as fake:
        with pytest.raises(ProtocolViolation, match="undecodable observation"):
            await run_action(client_for(fake.path))


async def test_after_a_violation_the_next_call_gets_a_fresh_connection(tmp_path):
    async def bad_then_good(reader, writer):
        await read_request_head(reader)
        if fake.connections == 1:
            writer.write(CHUNKED + b"%x\r\n" % (64 * MiB))
        else:
            writer.write(CHUNKED + _http.chunk(final()) + _http.LAST_CHUNK)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), bad_then_good) as fake:
        client = client_for(fake.path)
        with pytest.raises(ProtocolViolation):
            await run_action(client)
        assert isinstance((await run_action(client))[-1], CmdOutput)
        await client.aclose()
    assert fake.connections == 2


# ------------------------------------------------------------------ time


async def test_a_missing_response_head_times_out(tmp_path):
    async def mute(reader, writer):
        await read_request_head(reader)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), mute) as fake:
        client = client_for(fake.path, limits=ChannelLimits(head_timeout_s=0.2))
        with pytest.raises(ProtocolViolation, match="no response head to the action within 0.2s"):
            await run_action(client)


async def test_a_chunk_stalled_after_its_size_line_times_out(tmp_path):
    async def stall(reader, writer):
        await read_request_head(reader)
        writer.write(CHUNKED + b"10\r\nabc")
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), stall) as fake:
        client = client_for(fake.path, limits=ChannelLimits(chunk_timeout_s=0.2))
        with pytest.raises(ProtocolViolation, match="chunk of 16 bytes did not arrive within 0.2s"):
            await run_action(client)


async def test_a_body_stalled_after_its_head_times_out(tmp_path):
    async def stall(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), stall) as fake:
        client = client_for(fake.path, limits=ChannelLimits(chunk_timeout_s=0.2))
        with pytest.raises(ProtocolViolation, match="body did not arrive within 0.2s"):
            await client.health()


async def test_silence_between_chunks_is_not_a_timeout(tmp_path):
    async def quiet_command(reader, writer):
        await read_request_head(reader)
        chunk = encode(CmdChunk(id="c", cause="a", session_id="s", seq=0, data="working\n"))
        writer.write(CHUNKED + _http.chunk(chunk))
        await writer.drain()
        await asyncio.sleep(0.5)  # the command says nothing for longer than every read timeout
        writer.write(_http.chunk(final()) + _http.LAST_CHUNK)
        await until_eof(reader)

    async with FakeExecutor(str(tmp_path / "executor.sock"), quiet_command) as fake:
        client = client_for(fake.path, limits=ChannelLimits(head_timeout_s=0.1, chunk_timeout_s=0.1))
        observations = await run_action(client)
        await client.aclose()
    assert [type(o) for o in observations] == [CmdChunk, CmdOutput]
