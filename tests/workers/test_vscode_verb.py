"""The worker's vscode verb: the executor starts code-server, the port is exposed with the session's
token, the answer's URL carries it; refusals become error replies with stable codes. The forwarder
here is an in-memory stand-in for ``PortForwards`` (its ``expose`` contract), recording what it
was asked; the real one is tested with the ports."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from executor._server import Claim
from protocol import ErrorReply, PortInfo, VscodeInfo, codes
from workers._vscode_verb import VscodeVerb

from ..plugins.test_vscode import channel, needs_code_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.timeout(180)]


class RecordingForwards:
    def __init__(self) -> None:
        self.exposed: list[dict[str, object]] = []
        self.unexposed: list[int] = []

    async def expose(self, session_id, client, port, *, purpose="apps", token=None, path="/") -> PortInfo:  # type: ignore[no-untyped-def]
        self.exposed.append({"session_id": session_id, "port": port, "purpose": purpose, "token": token, "path": path})
        return PortInfo(session_id=session_id, port=port, host="127.0.0.1", host_port=40123,
                        url=f"http://127.0.0.1:40123{path}", purpose=purpose)

    async def unexpose(self, session_id, port) -> PortInfo:  # type: ignore[no-untyped-def]
        self.unexposed.append(port)
        return PortInfo(session_id=session_id, port=port, host="127.0.0.1", host_port=40123, url="", purpose="vscode")


@needs_code_server
async def test_vscode_exposes_code_server_with_the_sessions_token_in_the_url(channel):  # noqa: F811
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    forwards = RecordingForwards()
    verb = VscodeVerb(forwards)
    info = await verb.open("s", client)
    assert isinstance(info, VscodeInfo), info
    token = verb.token("s")
    assert info.url == f"http://127.0.0.1:40123/?folder={quote(info.workdir)}&tkn={token}"
    assert (info.host, info.host_port, info.token) == ("127.0.0.1", 40123, token) and len(token) >= 32
    assert forwards.exposed[0]["purpose"] == "vscode" and forwards.exposed[0]["token"] == token
    again = await verb.open("s", client)
    assert isinstance(again, VscodeInfo) and again.token == token
    verb.forget("s")
    assert verb.token("s") != token


async def test_a_session_without_the_plugin_is_plugin_not_enabled(channel):  # noqa: F811
    executor, client = channel
    await client.claim(Claim(session_id="s"))
    forwards = RecordingForwards()
    reply = await VscodeVerb(forwards).open("s", client)
    assert isinstance(reply, ErrorReply) and reply.code == codes.PLUGIN_NOT_ENABLED and "plugins=['vscode']" in reply.message
    assert forwards.exposed == []


async def test_code_server_missing_is_plugin_unavailable(channel, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CORRAL_CODE_SERVER", str(tmp_path / "none"))
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    reply = await VscodeVerb(RecordingForwards()).open("s", client)
    assert isinstance(reply, ErrorReply) and reply.code == codes.PLUGIN_UNAVAILABLE and "corral vscode install" in reply.message


@needs_code_server
async def test_a_restarted_code_server_is_exposed_again_and_its_old_port_unexposed(channel):  # noqa: F811
    import os

    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    forwards = RecordingForwards()
    verb = VscodeVerb(forwards)
    first = await verb.open("s", client)
    assert isinstance(first, VscodeInfo) and forwards.unexposed == []
    os.killpg((await executor.plugins.named("vscode")).pid, 9)
    again = await verb.open("s", client)
    assert isinstance(again, VscodeInfo) and again.token == first.token
    old, new = forwards.exposed[0]["port"], forwards.exposed[1]["port"]
    assert forwards.unexposed == ([old] if old != new else [])
