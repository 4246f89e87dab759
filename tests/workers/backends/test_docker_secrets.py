"""Secrets in a Docker sandbox: in the container's session environment, masked in everything published."""

from __future__ import annotations

import hashlib

import pytest

from protocol import CmdChunk, CmdOutput, CmdRun, FileContent, FileRead, new_id

from ..test_secrets import MASK, _stream_messages, _token
from .test_docker import ENGINE, docker_deployment, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow]


async def test_a_docker_sandbox_sees_the_secret_and_nothing_published_shows_it(nats_server, tmp_path, runtime_image):
    value = _token()
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), runtime_image, prefix="wsec") as client:
        async with await client.create_session(secrets={"API_TOKEN": value}) as s:
            digest = hashlib.sha256(value.encode()).hexdigest()
            seen = await s.cmd(f'test "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = {digest} && echo same')
            assert seen.content == "same\n"
            assert (await s.cmd("echo $API_TOKEN")).content == MASK + "\n"
            assert f"API_TOKEN={MASK}" in (await s.cmd("printenv")).content
            split = CmdRun(id=new_id(), command='printf %s "${API_TOKEN:0:10}"; sleep 0.3; printf %s "${API_TOKEN:10}"')
            observed = [obs async for obs in s.stream(split)]
            assert "".join(o.data for o in observed if isinstance(o, CmdChunk)) == MASK
            assert isinstance(observed[-1], CmdOutput) and observed[-1].content == MASK
            await s.cmd('printf %s "$API_TOKEN" > /workspace/tok.txt')
            read = await s.run(FileRead(id=new_id(), path="/workspace/tok.txt"))
            assert isinstance(read, FileContent) and read.content == MASK
        messages = await _stream_messages(client)
        assert messages and not [m for m in messages if value.encode() in m]
