"""What a flood of output costs the broker: bounded by quotas, chunks short-lived, the stream capped."""

from __future__ import annotations

from actors import StreamConfigOptions, stream_name
from protocol import CmdOutput, CmdRun, new_id, replay


async def test_a_flood_of_output_is_bounded_on_the_broker_and_the_session_survives(client, session):
    js = client.nats.jetstream()
    stream = stream_name(client.subjects)
    before = (await js.stream_info(stream)).state.bytes
    out = await session.run(CmdRun(id=new_id(), command="head -c 50000000 /dev/zero | tr '\\0' x | fold -w 1000"))
    assert isinstance(out, CmdOutput) and out.exit_code == 0
    assert "quota" in (out.hint or "") and out.truncated and out.full_output_path
    grown = (await js.stream_info(stream)).state.bytes - before
    assert grown < 24 * 2**20, f"the stream grew by {grown} bytes for 50 MB of output"
    assert (await session.cmd("echo still here")).content == "still here\n"


async def test_streamed_chunks_expire_from_the_stream_and_the_stream_has_a_size_cap(client, session):
    await session.run(CmdRun(id=new_id(), command="for i in 1 2 3; do echo $i; sleep 0.3; done"))
    js = client.nats.jetstream()
    config = (await js.stream_info(stream_name(client.subjects))).config
    assert config.max_bytes == StreamConfigOptions().max_bytes > 0 and config.allow_msg_ttl
    chunks = [m async for m in replay(client.nats, client.subjects.obs(session.session_id, "cmd_chunk"),
                                      stream=stream_name(client.subjects))]
    assert chunks and all(m.headers and m.headers.get("Nats-TTL") for m in chunks)
