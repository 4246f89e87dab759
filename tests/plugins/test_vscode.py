"""The vscode plugin on the local backend's terms: a real code-server from the host cache, started
through the executor's ``POST /v1/vscode`` and reached on the host's loopback (a local sandbox's)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from executor import _code_server as layout
from executor._server import Claim, Executor, ExecutorConfig, ExecutorServer
from executor._vscode import SERVER_DIR, healthz
from executor.client import ExecutorClient, VscodeUnavailable
from images import _code_server as installer
from images import code_server_root
from protocol import SessionSpec

pytestmark = [pytest.mark.timeout(180)]

INSTALLED = code_server_root()
needs_code_server = pytest.mark.skipif(INSTALLED is None, reason="code-server is not installed on this host: "
                                       "corral vscode install (./dev setup does)")


@pytest.fixture
async def channel(tmp_path: Path, monkeypatch):
    """An in-process executor on a Unix socket, unclaimed, and a client of it; it finds the host's
    code-server as a local sandbox's executor does (the backend sets CORRAL_CODE_SERVER)."""
    if INSTALLED is not None:
        monkeypatch.setenv(layout.ROOT_ENV, str(INSTALLED))
    config = ExecutorConfig(key="k", workdir=str(tmp_path / "work"), output_dir=str(tmp_path / "out"),
                            socket_path=str(tmp_path / "e.sock"))
    executor = Executor(config)
    await executor.start()
    server = ExecutorServer(executor, config)
    await server.start()
    client = ExecutorClient(key="k", socket_path=config.socket_path)
    try:
        yield executor, client
    finally:
        await client.aclose()
        await server.aclose()
        await executor.aclose()


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode(errors="replace")


def _code_servers(marker: str) -> list[int]:
    """Pids of live processes whose command line names ``marker`` (the session's server dir)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and "Z" not in (entry / "stat").read_text().split(")")[-1][:3]:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@needs_code_server
async def test_vscode_serves_the_workbench_on_the_sandbox_loopback_with_settings_outside_the_workspace(channel, tmp_path):
    executor, client = channel
    work = tmp_path / "work"
    await client.claim(Claim(session_id="s", plugins=["vscode"], env={"HOME": str(work)}))  # bubblewrap's HOME
    before = sorted(os.listdir(work))
    server = await client.vscode()
    assert server.workdir == str(work)
    assert (await healthz(server.port))[0] == 200
    status, page = await _get(server.port, f"/?folder={work}")
    assert status == 200 and "vscode-workbench-web-configuration" in page, page[:500]
    assert sorted(os.listdir(work)) == before  # nothing of code-server's in the user's files
    assert (tmp_path / "out" / SERVER_DIR / "data").is_dir() and (tmp_path / "out" / SERVER_DIR / "extensions").is_dir()


@needs_code_server
async def test_a_second_request_gets_the_running_server_and_a_dead_one_is_started_again(channel):
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    first = await client.vscode()
    assert await client.vscode() == first
    plugin = await executor.plugins.named("vscode")
    os.killpg(plugin.pid, 9)
    again = await client.vscode()
    assert (await healthz(again.port))[0] == 200


@needs_code_server
async def test_closing_the_executor_stops_code_server_and_everything_it_started(channel, tmp_path):
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    await client.vscode()
    marker = str(tmp_path / "out" / SERVER_DIR)
    assert _code_servers(marker)
    await executor.aclose()
    assert _code_servers(marker) == []
    await executor.aclose()  # idempotent


async def test_a_session_without_the_plugin_is_refused_with_409_saying_how_to_get_it(channel):
    executor, client = channel
    await client.claim(Claim(session_id="s"))
    with pytest.raises(VscodeUnavailable) as info:
        await client.vscode()
    assert info.value.status == 409 and "plugins=['vscode']" in info.value.reason


async def test_an_unclaimed_sandbox_is_refused_with_409(channel):
    with pytest.raises(VscodeUnavailable) as info:
        await channel[1].vscode()
    assert info.value.status == 409 and "not been claimed" in info.value.reason


async def test_code_server_missing_is_422_naming_the_variant_and_the_install_command(channel, tmp_path, monkeypatch):
    monkeypatch.setenv(layout.ROOT_ENV, str(tmp_path / "no-code-server"))
    executor, client = channel
    await client.claim(Claim(session_id="s", plugins=["vscode"]))
    with pytest.raises(VscodeUnavailable) as info:
        await client.vscode()
    assert info.value.status == 422
    assert "corral image build --with vscode" in info.value.reason and "corral vscode install" in info.value.reason


def test_the_installer_writes_the_layout_the_plugin_reads():
    assert (installer.STAMP, installer.ENTRY, installer.NODE) == (layout.STAMP, layout.ENTRY, layout.NODE)


@needs_code_server
def test_the_host_install_is_complete_stamped_and_readable_by_everyone():
    stamp = installer.read_stamp(INSTALLED)
    assert stamp is not None and stamp.version == installer.CODE_SERVER_VERSION and stamp.node_version.startswith("v20.")
    assert layout.read_stamp(INSTALLED) is not None
    assert os.stat(INSTALLED / layout.NODE).st_mode & 0o005 == 0o005  # bubblewrap's sandbox user runs it


@needs_code_server
async def test_a_local_sandbox_finds_the_host_install_through_the_backend_and_destroy_stops_it(tmp_path):
    from workers.backends.local import LocalBackend

    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wv", socket_dir=str(tmp_path / "s"), warn=False)
    handle = await backend.create("s-vscode", SessionSpec(plugins=["vscode"]))
    client = ExecutorClient(key=handle.key, socket_path=handle.socket_path)
    marker = str(Path(handle.workdir).parent / "outputs" / SERVER_DIR)
    try:
        server = await client.vscode()
        assert server.workdir == handle.workdir and (await healthz(server.port))[0] == 200
        assert _code_servers(marker)
    finally:
        await client.aclose()
        await backend.destroy(handle)
        await backend.aclose()
    assert _code_servers(marker) == []
