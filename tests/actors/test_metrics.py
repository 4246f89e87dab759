"""Prometheus metrics are served over HTTP and move with real work."""

import asyncio
import urllib.request

from actors import metrics
from actors.embedded import free_port
from protocol import CmdRun, new_id


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_metrics_endpoint_counts_actions_by_kind(session):
    port = free_port()
    metrics.serve(port)
    before = metrics.REGISTRY.get_sample_value("corral_action_seconds_sum", {"kind": "cmd_run"}) or 0.0
    await session.run(CmdRun(id=new_id(), command="echo metered"))
    text = await asyncio.to_thread(_scrape, port)
    assert 'corral_action_seconds_count{kind="cmd_run"}' in text
    assert "corral_action_queue_wait_seconds_bucket" in text
    assert metrics.REGISTRY.get_sample_value("corral_action_seconds_sum", {"kind": "cmd_run"}) > before
