"""Third-party analyzers: a real installed distribution's entry point (group ``corral.analyzers``)
is found by a ``corral worker`` process and enforced on a session's actions."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdRun, ConfirmationRequired, new_id

from ..helpers import start_worker_process, stop

ANALYZER = '''
from workers.security import Analyzer, Finding


class Shouty(Analyzer):
    """High risk for any command in capitals."""

    name = "shouty"

    async def analyze(self, action, ctx):
        command = getattr(action, "command", "")
        if command and command.upper() == command and any(c.isalpha() for c in command):
            return Finding(risk="high", reason="the command is shouting")
        return Finding(risk="low")
'''


def install_distribution(root: Path) -> None:
    """What pip leaves in site-packages for a distribution with one module and one entry point."""
    (root / "shouty_analyzer.py").write_text(ANALYZER)
    info = root / "shouty_analyzer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shouty-analyzer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[corral.analyzers]\nshouty = shouty_analyzer:Shouty\n")


async def test_an_analyzer_installed_by_entry_point_is_enforced_by_a_worker(nats_server, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site)
    config = tmp_path / "security.toml"
    config.write_text('analyzers = ["rules", "shouty"]\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    proc = await start_worker_process(nats_server.url, tmp_path / "w", "wep", "--security-config", str(config))
    try:
        async with await Client.connect(nats_server.url) as client, await client.create_session() as session:
            stream = session.stream(CmdRun(id=new_id(), command="ECHO HI"))
            first = await asyncio.wait_for(stream.__anext__(), 10)
            assert isinstance(first, ConfirmationRequired) and first.analyzer == "shouty"
            assert first.reason == "the command is shouting"
            await session.confirm(first.action_id, approve=False)
            assert [obs async for obs in stream][-1].decided_by == "approver"
            assert (await session.cmd("echo quiet")).content == "quiet\n"
    finally:
        await stop(proc)
        await ctl.aclose()


async def test_a_worker_refuses_to_start_with_an_analyzer_it_does_not_have(tmp_path):
    config = tmp_path / "security.toml"
    config.write_text('analyzers = ["rules", "nowhere"]\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "worker", "--security-config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0 and b"invalid_spec" in err and b"nowhere" in err
