"""VS Code through a whole deployment: ``Client.vscode`` -> controller -> worker -> executor, then a
browser's requests to the URL it answers: the token traded for a cookie, the workbench behind it,
403 without it. Local (the host's code-server) and Docker (the variant image, network none)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from images import code_server_root
from protocol import RequestError, VscodeInfo, codes

from ..workers.backends.test_docker import ENGINE, docker_deployment, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(code_server_root() is None, reason="code-server is not installed on this host: "
                                 "corral vscode install (./dev setup does)"), pytest.mark.timeout(600)]


async def _get(url: str, cookie: str = "") -> tuple[int, dict[str, str], str]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(-1), 20)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body.decode(errors="replace")


async def _open_like_a_browser(info: VscodeInfo) -> None:
    bare = info.url.split("&tkn=")[0]
    assert (await _get(bare))[0] == 403
    status, headers, _ = await _get(info.url)
    assert status == 302 and "tkn=" not in headers["location"], headers
    cookie = headers["set-cookie"].split(";", 1)[0]
    status, _, page = await _get(f"http://{info.host}:{info.host_port}{headers['location']}", cookie=cookie)
    assert status == 200 and "vscode-workbench-web-configuration" in page, page[:300]


async def test_local_vscode_url_opens_the_workbench_with_the_token_and_403s_without(client):
    async with await client.create_session(plugins=["vscode"]) as s:
        info = await s.vscode()
        assert isinstance(info, VscodeInfo) and info.url.startswith(f"http://{info.host}:{info.host_port}/?folder=")
        await _open_like_a_browser(info)
        again = await s.vscode()
        assert (again.host_port, again.token) == (info.host_port, info.token)
        ports = (await client.get_session(s.session_id)).ports
        assert [p.purpose for p in ports] == ["vscode"] and info.token not in ports[0].url


async def test_a_session_without_the_plugin_gets_plugin_not_enabled(client):
    async with await client.create_session() as s:
        with pytest.raises(RequestError) as info:
            await s.vscode()
        assert info.value.code == codes.PLUGIN_NOT_ENABLED


@pytest.fixture
async def docker_client(nats_server, tmp_path, runtime_image):  # noqa: F811
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), None, prefix="wv") as c:
        yield c


@pytest.mark.slow
@pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")
async def test_docker_vscode_without_network_opens_through_the_forward(docker_client):
    async with await docker_client.create_session(plugins=["vscode"], network="none", timeout_s=300) as s:
        info = await s.vscode()
        assert isinstance(info, VscodeInfo) and info.workdir == "/workspace", info
        await _open_like_a_browser(info)
