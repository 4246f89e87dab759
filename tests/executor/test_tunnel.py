"""The executor's tunnel route over its real channel: a byte pipe to a port of the sandbox's loopback."""

import asyncio
import hashlib
import json
import os
import sys

import pytest

from executor._tunnel import parse_port
from executor.client import ExecutorClient, ExecutorUnavailable, TunnelRefused, exact_pid


@pytest.fixture
async def executor(tmp_path):
    sock = str(tmp_path / "e.sock")
    config = {"key": "k1", "workdir": str(tmp_path / "ws"), "output_dir": str(tmp_path / "out"), "socket_path": sock,
              "session_id": "s1"}
    env = dict(os.environ, CORRAL_EXECUTOR_CONFIG=json.dumps(config))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "executor", env=env, stdout=asyncio.subprocess.PIPE)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    client = ExecutorClient(key="k1", socket_path=sock, peer_check=exact_pid(proc.pid))
    yield client, sock
    await client.aclose()
    proc.terminate()
    await proc.wait()


@pytest.fixture
async def upper_server():
    """A TCP server on 127.0.0.1 that answers each connection's bytes upper-cased once it sees EOF,
    then closes: it proves both the data and the half-close cross the tunnel."""
    async def serve(reader, writer):
        data = await reader.read()  # until the client's EOF
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _raw(sock: str, request: bytes) -> bytes:
    """One answer (head and sized body) to a hand-written request."""
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return head + body


def test_tunnel_ports_are_plain_decimal_within_the_tcp_range():
    assert parse_port("/v1/tunnel/8123") == 8123
    assert parse_port("/v1/tunnel/65535") == 65535
    for bad in ("0", "65536", "-1", "+80", "80 ", "８０", "0x50", "", "123456", "80/x"):
        assert parse_port("/v1/tunnel/" + bad) is None, bad


async def test_a_tunnel_carries_bytes_both_ways_and_passes_a_half_close_on(executor, upper_server):
    client, _ = executor
    reader, writer = await client.open_tunnel(upper_server)
    payload = os.urandom(3 * 1024 * 1024).hex().encode()  # 6 MB
    writer.write(payload)
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload.upper()).hexdigest()


async def test_a_tunnel_to_a_port_nothing_listens_on_is_refused_with_502(executor, unused_tcp_port):
    client, _ = executor
    with pytest.raises(TunnelRefused) as caught:
        await client.open_tunnel(unused_tcp_port)
    assert caught.value.port == unused_tcp_port and "refused" in caught.value.reason.lower()


async def test_a_refused_tunnel_is_a_502_naming_the_error_and_the_connection_ends(executor, unused_tcp_port):
    _, sock = executor
    answer = await _raw(sock, b"GET /v1/tunnel/%d HTTP/1.1\r\nAuthorization: Bearer k1\r\nUpgrade: corral-tunnel\r\n"
                              b"Connection: Upgrade\r\n\r\n" % unused_tcp_port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 ")
    assert json.loads(body)["port"] == unused_tcp_port and json.loads(body)["error"]


async def test_a_tunnel_with_a_wrong_key_is_refused_with_401(executor, upper_server):
    _, sock = executor
    answer = await _raw(sock, b"GET /v1/tunnel/%d HTTP/1.1\r\nAuthorization: Bearer nope\r\nUpgrade: corral-tunnel\r\n"
                              b"Connection: close\r\n\r\n" % upper_server)
    assert answer.startswith(b"HTTP/1.1 401 ")
    wrong = ExecutorClient(key="nope", socket_path=sock)
    with pytest.raises(ExecutorUnavailable, match="401"):
        await wrong.open_tunnel(upper_server)


@pytest.mark.parametrize("port", ["0", "65536", "abc", "80%0d%0a"])
async def test_a_tunnel_to_a_bad_port_is_refused_with_400(executor, port):
    _, sock = executor
    answer = await _raw(sock, b"GET /v1/tunnel/%s HTTP/1.1\r\nAuthorization: Bearer k1\r\nUpgrade: corral-tunnel\r\n\r\n"
                        % port.encode())
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_a_tunnel_without_the_upgrade_header_is_refused_with_400(executor, upper_server):
    _, sock = executor
    answer = await _raw(sock, b"GET /v1/tunnel/%d HTTP/1.1\r\nAuthorization: Bearer k1\r\n\r\n" % upper_server)
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_the_client_refuses_a_port_outside_the_tcp_range_without_connecting(executor):
    client, _ = executor
    for bad in (0, 65536, -1):
        with pytest.raises(ValueError):
            await client.open_tunnel(bad)
