"""Forwarded ports on a local deployment: verbs and their errors, isolation of forwards, the token gate."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from protocol import RequestError, codes
from workers._token_gate import cookie_name

from .ports_helpers import free_port, http_get, refused, serve_inside


async def test_exposing_an_exposed_port_returns_the_same_forward(session):
    port = free_port()
    first = await session.expose(port)
    assert await session.expose(port) == first


async def test_two_sessions_exposing_the_same_sandbox_port_get_different_host_ports(client):
    async with await client.create_session() as a, await client.create_session() as b:
        one, two = await a.expose(8123), await b.expose(8123)
        assert one.port == two.port == 8123 and one.host_port != two.host_port


async def test_unexpose_stops_the_forward_and_the_registry_forgets_it(session, client):
    port = free_port()
    await serve_inside(session, port, size=1000)
    info = await session.expose(port)
    assert (await http_get(info.host, info.host_port, "/small.txt"))[0] == 200
    assert await session.unexpose(port) == info
    assert await refused(info.host, info.host_port)
    assert (await client.get_session(session.session_id)).ports == []


async def test_unexposing_a_port_never_exposed_is_not_exposed(session):
    with pytest.raises(RequestError) as caught:
        await session.unexpose(8123)
    assert caught.value.code == codes.NOT_EXPOSED


@pytest.mark.parametrize("port", [0, -1, 65536, 1 << 40])
async def test_a_port_outside_the_tcp_range_is_invalid_argument(session, port):
    with pytest.raises(RequestError) as caught:
        await session.expose(port)
    assert caught.value.code == codes.INVALID_ARGUMENT


async def test_exposing_a_port_of_an_unknown_session_is_unknown_session(client):
    with pytest.raises(RequestError) as caught:
        await client.expose("s-nobody", 8123)
    assert caught.value.code == codes.UNKNOWN_SESSION


async def test_a_connection_to_a_port_nothing_listens_on_is_closed_promptly(session, deployment):
    info = await session.expose(free_port())
    reader, writer = await asyncio.open_connection(info.host, info.host_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, no answer, no hang
    writer.close()
    assert deployment.workers[0]._forwards.statistics()["refused"] == 1


async def test_a_large_body_arrives_intact_over_keep_alive_connections(session):
    port = free_port()
    digest = await serve_inside(session, port, size=8 * 1024 * 1024)
    info = await session.expose(port)
    bodies = await asyncio.gather(*(http_get(info.host, info.host_port, "/big.bin") for _ in range(3)))
    assert all(hashlib.sha256(body).hexdigest() == digest for _, _, body in bodies)


# ------------------------------------------------------------------ the token gate
@pytest.fixture
async def gated(session, deployment):
    """A ``vscode``-purpose forward with a token, as the VS Code plugin opens it: (info, token)."""
    worker = deployment.workers[0]
    port, token = free_port(), "tok-" + "x" * 20
    await serve_inside(session, port, size=1000)
    info = await worker._forwards.expose(session.session_id, worker._runners[session.session_id].client, port,
                                         purpose="vscode", token=token, path=f"/?tkn={token}&folder=/w")
    assert 40000 <= info.host_port <= 49999 and info.url.endswith(f"/?tkn={token}&folder=/w")
    return info, token


async def test_the_gate_refuses_a_request_without_the_token(gated):
    info, _ = gated
    status, _, body = await http_get(info.host, info.host_port, "/small.txt")
    assert status == 403 and b"hello" not in body
    assert (await http_get(info.host, info.host_port, "/small.txt?tkn=wrong"))[0] == 403


async def test_the_token_in_the_query_is_traded_for_a_cookie_that_then_passes(gated):
    info, token = gated
    status, headers, _ = await http_get(info.host, info.host_port, f"/small.txt?tkn={token}&x=1")
    cookie = cookie_name(info.host_port)
    assert status == 302 and headers["location"] == "/small.txt?x=1"
    assert headers["set-cookie"] == f"{cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
    status, _, body = await http_get(info.host, info.host_port, "/small.txt", f"Cookie: {cookie}={token}")
    assert (status, body) == (200, b"hello\n")


async def test_a_gated_connection_that_sends_no_head_is_answered_403_after_its_timeout(gated, monkeypatch):
    from workers import _token_gate

    monkeypatch.setattr(_token_gate, "HEAD_TIMEOUT_S", 0.2)
    info, _ = gated
    reader, writer = await asyncio.open_connection(info.host, info.host_port)
    writer.write(b"GET / HT")  # never finished
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 403 ")
    writer.close()


async def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), timeout_s)


async def test_closing_the_session_closes_its_live_connections_and_listeners(client, deployment):
    forwards = deployment.workers[0]._forwards
    async with await client.create_session() as session:
        port = free_port()
        await serve_inside(session, port, size=10)
        info = await session.expose(port)
        reader, writer = await asyncio.open_connection(info.host, info.host_port)
        writer.write(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n")  # an unfinished head: the server waits for more
        await _until(lambda: forwards.statistics()["connections"] == 1)
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass
    writer.close()
    assert forwards.statistics()["connections"] == forwards.statistics()["forwards"] == 0
    assert await refused(info.host, info.host_port)
