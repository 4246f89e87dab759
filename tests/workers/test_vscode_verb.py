"""The worker's vscode verb: the executor starts code-server, the port is exposed with the session's
token, the answer's URL carries it; refusals become error replies with stable codes. The
forwarder is the worker's real ``PortForwards``."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from executor._server import Claim
from protocol import ErrorReply, VscodeInfo, codes
from workers._forward import PortForwards
from workers._ports import PortAllocator
from workers._vscode_verb import VscodeVerb

from ..plugins.test_vscode import channel, needs_code_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture
async def forwards(tmp_path):
    """The worker's real forwarder, on a port range and lock directory of this test's own."""
    real = PortForwards(PortAllocator(str(tmp_path / "locks")))
    yield real
    await real.aclose()


@needs_code_server
async def test_vscode_exposes_code_server_with_the_sessions_token_in_the_url(channel, forwards):  # noqa: F811
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    verb = VscodeVerb(forwards)
    info = await verb.open("s", client)
    assert isinstance(info, VscodeInfo), info
    token = verb.token("s")
    assert 40000 <= info.host_port <= 49999
    assert info.url == f"http://127.0.0.1:{info.host_port}/?folder={quote(info.workdir)}&tkn={token}"
    assert (info.host, info.token) == ("127.0.0.1", token) and len(token) >= 32
    [forward] = forwards.ports("s")
    assert forward.purpose == "vscode" and forward.host_port == info.host_port
    again = await verb.open("s", client)
    assert isinstance(again, VscodeInfo) and again.token == token
    verb.forget("s")
    assert verb.token("s") != token


async def test_a_session_without_the_plugin_is_plugin_not_enabled(channel, forwards):  # noqa: F811
    executor, client = channel
    await client.claim(Claim(session_id="s"))
    reply = await VscodeVerb(forwards).open("s", client)
    assert isinstance(reply, ErrorReply) and reply.code == codes.PLUGIN_NOT_ENABLED and "plugins=['vscode']" in reply.message
    assert forwards.ports("s") == []


async def test_code_server_missing_is_plugin_unavailable(channel, forwards, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CORRAL_CODE_SERVER", str(tmp_path / "none"))
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    reply = await VscodeVerb(forwards).open("s", client)
    assert isinstance(reply, ErrorReply) and reply.code == codes.PLUGIN_UNAVAILABLE and "corral vscode install" in reply.message


@needs_code_server
async def test_a_restarted_code_server_is_exposed_again_and_its_old_port_unexposed(channel, forwards):  # noqa: F811
    import os

    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    verb = VscodeVerb(forwards)
    first = await verb.open("s", client)
    assert isinstance(first, VscodeInfo)
    [old] = forwards.ports("s")
    os.killpg((await executor.plugins.named("vscode")).pid, 9)
    again = await verb.open("s", client)
    assert isinstance(again, VscodeInfo) and again.token == first.token
    [new] = forwards.ports("s")  # one forward: the old one was unexposed when the port moved
    assert new.port == (await client.vscode()).port and new.purpose == "vscode"
