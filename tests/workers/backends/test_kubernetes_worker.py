"""A worker of the kubernetes backend SIGKILLed mid-action: the controller notices, a new worker
adopts the pod by its label, and every action, the in-flight one included, is answered exactly once."""

from __future__ import annotations

import asyncio
import signal

import pytest

from actors.controller import Controller, ControllerConfig
from protocol import Client, CmdChunk, CmdOutput, CmdRun, decode_observation, decode_reply, new_id

from ..helpers import FinalLedger, start_worker_process, stop
from .test_kubernetes import KUBECONFIG, NO_CLUSTER, k8s_image, namespace  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow,
              pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")]


async def test_a_sigkilled_worker_is_replaced_and_its_pod_adopted_with_each_action_answered_once(
        nats_server, tmp_path, namespace, k8s_image):  # noqa: F811
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=3, reap_interval_s=0.2, lost_grace_s=60))
    await ctl.start()
    args = ("--backend", "kubernetes", "--kubeconfig", KUBECONFIG, "--namespace", namespace, "--image", k8s_image)
    worker = await start_worker_process(nats_server.url, tmp_path / "w", "wk8s", *args)
    try:
        async with await Client.connect(nats_server.url) as client:
            s = await client.create_session(backend="kubernetes")
            ledger = await FinalLedger().watch(client.nats, client.subjects, s.session_id)
            statuses: list[str] = []
            lost, recovered = asyncio.Event(), asyncio.Event()

            async def on_status(msg):
                info = decode_reply(msg.data)
                statuses.append(info.status)
                {"lost": lost, "recovered": recovered}.get(info.status, asyncio.Event()).set()

            await client.nats.subscribe(client.subjects.status(s.session_id), cb=on_status)
            chunks = await client.nats.subscribe(client.subjects.observations(s.session_id))
            action = CmdRun(id=new_id(), command="echo started; sleep 3; echo once >> marker; wc -l < marker")
            in_flight = asyncio.create_task(s.run(action))
            while True:  # running in the pod once its first chunk is out
                obs = decode_observation((await chunks.next_msg(timeout=60)).data)
                if isinstance(obs, CmdChunk) and obs.cause == action.id:
                    break
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            await asyncio.wait_for(lost.wait(), 20)
            queued = CmdRun(id=new_id(), command="echo sent-while-down")
            queued_answer = asyncio.create_task(s.run(queued))  # durable in the stream meanwhile

            worker = await start_worker_process(nats_server.url, tmp_path / "w", "wk8s", *args)
            await asyncio.wait_for(recovered.wait(), 60)
            out = await asyncio.wait_for(in_flight, 60)
            assert isinstance(out, CmdOutput) and out.content == "started\n1\n", out
            assert (await asyncio.wait_for(queued_answer, 30)).content == "sent-while-down\n"
            assert (await s.cmd("wc -l < marker")).content == "1\n"  # the in-flight action ran once
            await ledger.wait_for([action.id, queued.id])
            assert ledger.counts[action.id] == 1 and ledger.counts[queued.id] == 1
            assert statuses.index("lost") < statuses.index("recovered")
            await s.close()
            await ledger.aclose()
    finally:
        await stop(worker)
        await ctl.aclose()
