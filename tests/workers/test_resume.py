"""A client that goes away resumes a session's observations from the stream, missing nothing."""

import asyncio

from protocol import Client, CmdOutput, CmdRun, encode, new_id


async def test_reconnecting_client_reads_every_observation_since_its_last_sequence(deployment, client):
    s = await client.create_session()
    first = await s.run(CmdRun(id=new_id(), command="echo one"))
    seen = [(seq, obs) async for seq, obs in s.observations(follow=False)]
    assert [o.content for _, o in seen if isinstance(o, CmdOutput)] == ["one\n"]
    last_seq = seen[-1][0]
    # While "away": another publisher drives the session.
    nc = client.nats
    for word in ("two", "three"):
        await nc.publish(client.subjects.action(s.session_id, "cmd_run"), encode(CmdRun(id=new_id(), command=f"echo {word}")))
    async with await Client.connect(deployment.url) as back:
        again = await back.attach(s.session_id)
        got = []
        async for seq, obs in again.observations(since=last_seq + 1):
            if isinstance(obs, CmdOutput):
                got.append(obs.content)
            if len(got) == 2:
                break
        assert got == ["two\n", "three\n"]
        await again.detach()
    assert first.content == "one\n"
    await s.close()


async def test_actions_published_before_a_broker_restart_run_after_it(tmp_path):
    from actors.embedded import EmbeddedNats
    from cli.up import Deployment, UpConfig

    server = EmbeddedNats(str(tmp_path / "nats"))
    await server.start()
    async with Deployment(UpConfig(nats_url=server.url, data_dir=str(tmp_path / "c"), audit=False, warm_pool=0)) as dep:
        async with await Client.connect(dep.url) as c:
            s = await c.create_session()
            assert (await s.cmd("echo before")).content == "before\n"
            await server.stop()
            await server.start()  # same port, same JetStream directory
            out = await asyncio.wait_for(s.cmd("echo after"), 30)
            assert isinstance(out, CmdOutput) and out.content == "after\n"
            await s.close()
    await server.aclose()
