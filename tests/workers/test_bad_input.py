"""Bad input: each yields an error observation with a stable code, and nothing dies."""

import asyncio

import msgspec
import pytest

from protocol import (
    JSON_HEADERS,
    CmdOutput,
    CmdRun,
    Error,
    FileRead,
    FileWrite,
    RequestError,
    codes,
    decode_observation,
    encode,
    new_id,
)


async def _publish_and_next(client, session_id, kind, data, headers=None):
    nc = client.nats
    sub = await nc.subscribe(client.subjects.observations(session_id))
    await nc.publish(client.subjects.action(session_id, kind), data, headers=headers)
    msg = await sub.next_msg(timeout=10)
    await sub.unsubscribe()
    return decode_observation(msg.data, json=bool(headers)), msg


async def _still_works(session):
    out = await session.run(CmdRun(id=new_id(), command="echo alive"))
    assert isinstance(out, CmdOutput) and out.content == "alive\n"


async def test_undecodable_payload_is_bad_payload(session, client):
    obs, _ = await _publish_and_next(client, session.session_id, "cmd_run", b"\xc1 not msgpack")
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD and obs.cause is None
    await _still_works(session)


async def test_unknown_kind_keeps_the_action_id_as_cause(session, client):
    obs, msg = await _publish_and_next(client, session.session_id, "teleport",
                                       b'{"kind": "teleport", "id": "t1"}', JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.UNKNOWN_KIND and obs.cause == "t1"
    assert msg.subject.endswith(".obs.error")
    await _still_works(session)


async def test_wrong_field_types_are_bad_payload(session, client):
    obs, _ = await _publish_and_next(client, session.session_id, "cmd_run",
                                     b'{"kind": "cmd_run", "id": "t2", "command": ["ls"]}', JSON_HEADERS)
    assert obs.code == codes.BAD_PAYLOAD and obs.cause == "t2" and "command" in obs.message
    await _still_works(session)


async def test_kind_not_matching_subject_is_kind_mismatch(session, client):
    obs, _ = await _publish_and_next(client, session.session_id, "file_read",
                                     encode(CmdRun(id="t3", command="echo no")))
    assert obs.code == codes.KIND_MISMATCH and obs.cause == "t3"
    await _still_works(session)


async def test_json_publisher_gets_json_answers(session, client):
    obs, msg = await _publish_and_next(client, session.session_id, "cmd_run",
                                       b'{"kind": "cmd_run", "id": "t4", "command": "echo json"}', JSON_HEADERS)
    assert msg.headers["Content-Type"] == "application/json"
    assert isinstance(obs, CmdOutput) and obs.content == "json\n" and obs.cause == "t4"


async def test_action_for_unknown_session_is_unknown_session(client):
    obs, _ = await _publish_and_next(client, "snosuchsession", "cmd_run", encode(CmdRun(id="t5", command="ls")))
    assert isinstance(obs, Error) and obs.code == codes.UNKNOWN_SESSION and obs.cause == "t5"


async def test_action_for_closed_session_is_unknown_session(client):
    s = await client.create_session()
    await s.close()
    obs, _ = await _publish_and_next(client, s.session_id, "cmd_run", encode(CmdRun(id="t6", command="ls")))
    assert obs.code == codes.UNKNOWN_SESSION


async def test_payload_over_broker_max_is_payload_too_large(session):
    too_big = "x" * (session._client.nats.max_payload + 1)
    obs = await session.run(FileWrite(id=new_id(), path="big.txt", content=too_big))
    assert isinstance(obs, Error) and obs.code == codes.PAYLOAD_TOO_LARGE
    await _still_works(session)


async def test_bad_control_request_gets_error_reply(client):
    msg = await client.nats.request(client.subjects.ctl("create"), b'{"backend": 3}', timeout=5, headers=JSON_HEADERS)
    assert b'"code":"invalid_spec"' in msg.data
    msg = await client.nats.request(client.subjects.ctl("get"), b"\xc1", timeout=5)
    from protocol import decode_reply
    reply = decode_reply(msg.data)
    assert reply.code == codes.BAD_PAYLOAD


async def test_unknown_spec_field_is_invalid_spec(client):
    msg = await client.nats.request(client.subjects.ctl("create"), b'{"colour": "red"}', timeout=5, headers=JSON_HEADERS)
    assert b'"code":"invalid_spec"' in msg.data and b"colour" in msg.data


async def test_an_answer_over_the_broker_max_becomes_payload_too_large(session, client):
    # 600 000 quotes: fine as MessagePack, ~1.2 MB as JSON once escaped — over the 1 MB max.
    from protocol import FileRead
    await session.run(FileWrite(id=new_id(), path="quotes.txt", content='"' * 600_000))
    nc = client.nats
    sub = await nc.subscribe(client.subjects.observations(session.session_id))
    action = FileRead(id=new_id(), path="quotes.txt")
    await nc.publish(client.subjects.action(session.session_id, "file_read"), encode(action, json=True),
                     headers=JSON_HEADERS)
    obs = decode_observation((await sub.next_msg(timeout=10)).data, json=True)
    await sub.unsubscribe()
    assert isinstance(obs, Error) and obs.code == codes.PAYLOAD_TOO_LARGE and obs.cause == action.id
    await _still_works(session)


# ----------------------------------------------------------------- the probe's poison messages


async def _consumer_settled(client, session_id):
    """The session's consumer holds nothing unacked (a poison message would stay pending forever)."""
    from actors import stream_name

    js = client.nats.jetstream()
    for _ in range(100):
        info = await js.consumer_info(stream_name(client.subjects), f"session_{session_id}")
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"consumer still holds {info.num_ack_pending} unacked, {info.num_pending} pending")


async def test_json_nested_thousands_deep_is_bad_payload_and_acked(session, client):
    deep = b'{"kind": "mcp_call", "id": "deep1", "server": "s", "tool": "t", "arguments": {"x": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
    obs, _ = await _publish_and_next(client, session.session_id, "mcp_call", deep, JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD and obs.cause == "deep1"
    await _consumer_settled(client, session.session_id)
    await _still_works(session)


async def test_msgpack_nested_thousands_deep_is_bad_payload_and_acked(session, client):
    deep = b"\x83\xa4kind\xa8mcp_call\xa2id\xa5deep2\xa9arguments" + b"\x91" * 5000 + b"\xc0"
    obs, _ = await _publish_and_next(client, session.session_id, "mcp_call", deep)
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD
    await _consumer_settled(client, session.session_id)
    await _still_works(session)


async def test_a_deep_payload_cannot_hurt_the_controller(client):
    deep = b"[" * 5000 + b"]" * 5000
    msg = await client.nats.request(client.subjects.ctl("create"), deep, timeout=5, headers=JSON_HEADERS)
    assert b'"code"' in msg.data
    obs, _ = await _publish_and_next(client, "snosuchsession", "cmd_run", deep, JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.UNKNOWN_SESSION
    await client.nats.publish(client.subjects.status("snosuchsession"), deep)
    await client.nats.publish("corral.worker.w.heartbeat", deep)
    assert isinstance(await client.list_sessions(), list)  # still serving


async def test_a_subject_with_extra_tokens_is_kind_mismatch_and_does_not_run(session, client):
    action = FileWrite(id=new_id(), path="extra.txt", content="ran")
    nc = client.nats
    sub = await nc.subscribe(client.subjects.observations(session.session_id))
    await nc.publish(client.subjects.action(session.session_id, "file_write") + ".extra", encode(action))
    obs = decode_observation((await sub.next_msg(timeout=10)).data)
    await sub.unsubscribe()
    assert isinstance(obs, Error) and obs.code == codes.KIND_MISMATCH and obs.cause == action.id
    assert (await session.cmd("test -e extra.txt; echo $?")).content == "1\n"


@pytest.mark.parametrize("fields", [{"timeout_s": -1}, {"timeout_s": float("nan")}, {"timeout_s": float("inf")},
                                    {"soft_timeout_s": -5}, {"timeout_s": 0}])
async def test_nonsense_timeouts_are_invalid_argument_and_nothing_runs(session, fields):
    out = await session.run(CmdRun(id=new_id(), command="touch timeout-ran", **fields))
    assert isinstance(out, Error) and out.code == codes.INVALID_ARGUMENT, out
    assert (await session.cmd("test -e timeout-ran; echo $?")).content == "1\n"


async def test_an_unreadable_number_still_names_the_action_as_cause(session, client):
    obs, _ = await _publish_and_next(client, session.session_id, "cmd_run",
                                     b'{"kind": "cmd_run", "id": "inf1", "command": "ls", "timeout_s": 1e999}', JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD and obs.cause == "inf1"


async def test_a_nul_in_a_path_is_invalid_argument(session):
    out = await session.run(FileRead(id=new_id(), path="a\x00b"))
    assert isinstance(out, Error) and out.code == codes.INVALID_ARGUMENT


async def test_a_huge_view_range_is_invalid_argument(session, client):
    await session.write_file("v.txt", "x\n")
    data = b'{"kind": "file_edit", "id": "vr1", "command": "view", "path": "v.txt", "view_range": [1, 100000000000000000000]}'
    obs, _ = await _publish_and_next(client, session.session_id, "file_edit", data, JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.INVALID_ARGUMENT and obs.cause == "vr1"


@pytest.mark.parametrize("bad_id", ["a\r\nb", "a b", "../x", "x" * 257, "", "a\x00"])
async def test_unsafe_action_ids_are_bad_payload(session, client, bad_id):
    data = msgspec.json.encode({"kind": "cmd_run", "id": bad_id, "command": "touch id-ran"})
    obs, _ = await _publish_and_next(client, session.session_id, "cmd_run", data, JSON_HEADERS)
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD and obs.cause is None
    assert (await session.cmd("test -e id-ran; echo $?")).content == "1\n"


async def test_a_lookup_with_an_unsafe_id_is_refused(session, client):
    msg = await client.nats.request(client.subjects.lookup(session.session_id),
                                    b"x HTTP/1.1\r\nHost: docker\r\n\r\nPOST /containers/create", timeout=5)
    obs = decode_observation(msg.data)
    assert isinstance(obs, Error) and obs.code == codes.BAD_PAYLOAD


async def test_an_env_name_with_an_equals_sign_is_invalid_spec(client):
    with pytest.raises(RequestError) as info:
        await client.create_session(env={"A=B": "1"})
    assert info.value.code == codes.INVALID_SPEC and "A=B" in info.value.message


async def test_actions_queued_behind_a_dead_sandbox_are_sandbox_lost(deployment, client):
    import os
    import signal

    session = await client.create_session()
    running = asyncio.create_task(session.run(CmdRun(id=new_id(), command="touch started; sleep 30")))
    while (await session.cmd("test -e started && echo y || echo n", shell="probe")).content != "y\n":
        await asyncio.sleep(0.05)
    queued = [asyncio.create_task(session.run(CmdRun(id=new_id(), command="echo behind"))) for _ in range(2)]
    await asyncio.sleep(0.2)  # the two reach the lane behind the running one
    (runner,) = [w._runners[session.session_id] for w in deployment.workers if session.session_id in w._runners]
    os.killpg(runner.handle.pid, signal.SIGKILL)
    first = await asyncio.wait_for(running, 20)
    rest = await asyncio.wait_for(asyncio.gather(*queued), 20)
    assert isinstance(first, Error) and first.code == codes.SANDBOX_DIED
    assert [r.code for r in rest] == [codes.SANDBOX_LOST, codes.SANDBOX_LOST]
