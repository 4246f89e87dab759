"""Bad input: each yields an error observation with a stable code, and nothing dies."""



from protocol import CmdOutput, CmdRun, Error, FileWrite, codes, decode_observation, encode, new_id
from protocol._codec import JSON_HEADERS


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
