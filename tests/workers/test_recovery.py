"""A worker killed with SIGKILL mid-action: detected, re-adopted, every action answered exactly once."""

import asyncio
from pathlib import Path
import signal
import sys

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdOutput, CmdRun, decode_reply, new_id

pytestmark = pytest.mark.slow


async def _start_worker(url, base_dir):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "worker", "--nats", url, "--worker-id", "wk", "--base-dir", str(base_dir),
        "--warm-pool", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"corral worker wk" in line
    return proc


async def _wait_file(path: Path):
    while not path.exists():
        await asyncio.sleep(0.02)


async def test_sigkilled_worker_is_detected_readopted_and_runs_each_action_once(nats_server, tmp_path):
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=3, reap_interval_s=0.2, lost_grace_s=60))
    await ctl.start()
    worker = await _start_worker(nats_server.url, tmp_path / "w")
    ws = tmp_path / "ws"
    try:
        async with await Client.connect(nats_server.url) as client:
            s = await client.create_session(workdir=str(ws))
            statuses = []
            lost_seen, recovered_seen = asyncio.Event(), asyncio.Event()

            async def on_status(msg):
                info = decode_reply(msg.data)
                statuses.append(info.status)
                (lost_seen if info.status == "lost" else recovered_seen if info.status == "recovered" else asyncio.Event()).set()

            await client.nats.subscribe(client.subjects.status(s.session_id), cb=on_status)
            in_flight = asyncio.create_task(s.run(CmdRun(
                id=new_id(), command="touch started; sleep 2; echo once >> marker; wc -l < marker")))
            await asyncio.wait_for(_wait_file(ws / "started"), 20)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()

            await asyncio.wait_for(lost_seen.wait(), 15)  # heartbeat expiry noticed
            queued = asyncio.create_task(s.cmd("echo sent-while-down"))  # durable in the stream meanwhile

            worker = await _start_worker(nats_server.url, tmp_path / "w")
            await asyncio.wait_for(recovered_seen.wait(), 20)
            out = await asyncio.wait_for(in_flight, 30)
            assert isinstance(out, CmdOutput) and out.content == "1\n"
            assert (await asyncio.wait_for(queued, 30)).content == "sent-while-down\n"
            assert (await s.cmd("wc -l < marker")).content == "1\n"  # the in-flight action ran once
            assert (await client.get_session(s.session_id)).status == "ready"
            assert statuses.index("lost") < statuses.index("recovered")
            await s.close()
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
        await ctl.aclose()
