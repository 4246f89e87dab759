"""A session end to end: SDK -> NATS/JetStream -> controller/worker -> executor -> back."""

import asyncio

import pytest

from protocol import (
    BrowseUrl,
    CmdChunk,
    CmdOutput,
    CmdRun,
    Error,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    FileWrite,
    FileWritten,
    IPythonRun,
    codes,
    decode_observation,
    encode,
    new_id,
)


async def test_echo_round_trip(session):
    out = await session.run(CmdRun(id=new_id(), command="echo hi"))
    assert isinstance(out, CmdOutput)
    assert (out.content, out.exit_code, out.status) == ("hi\n", 0, "completed")
    assert out.session_id == session.session_id


async def test_exit_code_and_cwd_are_reported(session):
    out = await session.run(CmdRun(id=new_id(), command="cd /tmp && false"))
    assert out.exit_code == 1 and out.working_dir == "/tmp"


async def test_actions_of_one_shell_run_in_publish_order(session):
    ids = [new_id() for _ in range(20)]
    results = await asyncio.gather(*(
        session.run(CmdRun(id=i, command=f"echo {n} >> order.txt; cat order.txt | wc -l")) for n, i in enumerate(ids)
    ))
    counts = [int(r.content.strip()) for r in results]
    assert counts == list(range(1, 21))
    lines = (await session.run(FileRead(id=new_id(), path="order.txt"))).content.split()
    assert lines == [str(n) for n in range(20)]


async def test_repeated_action_id_returns_stored_observation_without_rerunning(session):
    action = CmdRun(id=new_id(), command="echo x >> ran.txt; wc -l < ran.txt")
    first = await session.run(action)
    second = await session.run(action)
    assert second == first
    count = await session.run(CmdRun(id=new_id(), command="wc -l < ran.txt"))
    assert count.content.strip() == "1"


async def test_repeated_id_published_raw_without_dedup_header_is_answered_from_store(session, client):
    action = CmdRun(id=new_id(), command="echo y >> raw.txt; wc -l < raw.txt")
    first = await session.run(action)
    nc = client.nats
    sub = await nc.subscribe(client.subjects.observations(session.session_id))
    await nc.publish(client.subjects.action(session.session_id, "cmd_run"), encode(action))
    msg = await sub.next_msg(timeout=10)
    assert decode_observation(msg.data) == first
    count = await session.run(CmdRun(id=new_id(), command="wc -l < raw.txt"))
    assert count.content.strip() == "1"


async def test_other_shell_runs_while_main_is_busy(session):
    slow = asyncio.create_task(session.run(CmdRun(id=new_id(), command="sleep 1.5; echo slow")))
    fast = await session.run(CmdRun(id=new_id(), command="echo fast", shell="side"))
    assert fast.content == "fast\n"
    assert not slow.done()
    assert (await slow).content == "slow\n"


async def test_chunks_stream_before_the_final_output(session):
    seen = []
    async for obs in session.stream(CmdRun(id=new_id(), command="for i in 1 2 3; do echo $i; sleep 0.3; done")):
        seen.append(obs)
    assert isinstance(seen[-1], CmdOutput) and seen[-1].content == "1\n2\n3\n"
    assert any(isinstance(o, CmdChunk) for o in seen[:-1])


async def test_files_and_editor_through_the_session(session):
    written = await session.run(FileWrite(id=new_id(), path="notes/a.txt", content="one\ntwo"))
    assert isinstance(written, FileWritten) and written.size == 7
    read = await session.run(FileRead(id=new_id(), path="notes/a.txt", start_line=2))
    assert isinstance(read, FileContent) and read.content == "two"
    edited = await session.run(FileEdit(id=new_id(), command="str_replace", path=written.path, old_str="two", new_str="2"))
    assert isinstance(edited, FileEdited) and "+2" in edited.diff


async def test_missing_file_is_file_not_found(session):
    obs = await session.run(FileRead(id=new_id(), path="/no/such/file"))
    assert isinstance(obs, Error) and obs.code == codes.FILE_NOT_FOUND


async def test_reading_a_directory_is_is_a_directory(session):
    obs = await session.run(FileRead(id=new_id(), path="/tmp"))
    assert isinstance(obs, Error) and obs.code == codes.IS_A_DIRECTORY


async def test_binary_file_read_as_text_is_binary_file(session):
    await session.run(FileWrite(id=new_id(), path="b.bin", content="AP8A/w==", encoding="base64"))
    obs = await session.run(FileRead(id=new_id(), path="b.bin"))
    assert isinstance(obs, Error) and obs.code == codes.BINARY_FILE


async def test_a_browse_action_without_the_browser_plugin_is_plugin_not_enabled_saying_how(session):
    obs = await session.run(BrowseUrl(id=new_id(), url="http://127.0.0.1/"))
    assert isinstance(obs, Error) and obs.code == codes.PLUGIN_NOT_ENABLED and obs.cause is not None
    assert "plugins: ['browser']" in obs.message


async def test_a_plugin_kind_the_session_did_not_ask_for_is_plugin_not_enabled(session):
    obs = await session.run(IPythonRun(id=new_id(), code="1+1"))
    assert isinstance(obs, Error) and obs.code == codes.PLUGIN_NOT_ENABLED and obs.cause is not None


async def test_session_env_and_workdir_apply(client, tmp_path):
    workdir = tmp_path / "ws"
    async with await client.create_session(env={"GREETING": "hello"}, workdir=str(workdir)) as s:
        out = await s.run(CmdRun(id=new_id(), command="echo $GREETING; pwd"))
        assert out.content == f"hello\n{workdir}\n"


async def test_c_c_reaches_a_command_that_blocks_its_shell(session):
    stream = session.stream(CmdRun(id=new_id(), command="echo started; sleep 100"))
    first = await stream.__anext__()  # its first chunk: the command is running and blocks the lane
    assert isinstance(first, CmdChunk) and first.data == "started\n"
    sent = await session.run(CmdRun(id=new_id(), command="C-c", is_input=True))
    assert sent.status == "running" and "C-c" in sent.hint
    final = await asyncio.wait_for(stream.__anext__(), 10)
    while isinstance(final, CmdChunk):  # what the terminal prints on the interrupt
        final = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(final, CmdOutput) and final.status == "interrupted"


async def test_a_mount_outside_the_allowed_roots_is_invalid_spec(client):
    from protocol import RequestError
    with pytest.raises(RequestError) as info:
        await client.create_session(mounts=[{"source": "/etc", "target": "/etc"}])
    assert info.value.code == codes.INVALID_SPEC and "allowed root" in info.value.message


async def test_an_allowed_mount_is_visible_in_the_sandbox(client, tmp_path):
    shared = tmp_path / "mirrors"
    shared.mkdir()
    (shared / "hello.txt").write_text("mirrored\n")
    async with await client.create_session(mounts=[{"source": str(shared), "target": str(shared)}]) as s:
        assert (await s.cmd(f"cat {shared}/hello.txt")).content == "mirrored\n"


async def test_sdk_shorthands_for_files_and_the_editor(session):
    written = await session.write_file("notes/b.txt", "alpha\nbeta\n")
    assert isinstance(written, FileWritten) and written.size == 11
    edited = await session.edit("str_replace", written.path, old_str="beta", new_str="gamma")
    assert isinstance(edited, FileEdited)
    read = await session.read_file("notes/b.txt", start_line=2)
    assert isinstance(read, FileContent) and read.content == "gamma\n"
    missing = await session.read_file("notes/none.txt")
    assert isinstance(missing, Error) and missing.code == codes.FILE_NOT_FOUND


async def test_every_action_has_one_canonical_log_line_with_its_outcome(session):
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        ok = await session.run(CmdRun(id=new_id(), command="exit 3"))
        bad = await session.run(FileRead(id=new_id(), path="/no/such/file"))
    lines = [e for e in logs if e["event"] == "action_answered"]
    by_action = {e["action_id"]: e for e in lines}
    assert len(lines) == 2 and set(by_action) == {ok.cause, bad.cause}
    assert by_action[ok.cause]["outcome"] == "completed:3" and by_action[bad.cause]["outcome"] == "error:file_not_found"
    assert all(e["session_id"] == session.session_id and e["worker_id"] and e["log_level"] == "info" for e in lines)


async def test_a_file_bigger_than_one_message_is_written_in_parts_with_append(session):
    part = "x" * 600_000
    assert (await session.write_file("big.txt", part)).size == 600_000
    assert (await session.write_file("big.txt", part, append=True)).size == 600_000
    assert (await session.cmd("wc -c < big.txt")).content == "1200000\n"
