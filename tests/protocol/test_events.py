"""Every union member round-trips in both encodings; golden wire payloads keep decoding."""

from pathlib import Path

import msgspec
import pytest

from protocol import (
    ACTION_KINDS,
    ActionDecodeError,
    ErrorReply,
    SessionSpec,
    codes,
    decode_action,
    decode_observation,
    decode_reply,
    encode,
    json_schema,
)

from .samples import ACTIONS, OBSERVATIONS, REPLIES, SPECS

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.id)
def test_action_round_trips(action, as_json):
    assert decode_action(encode(action, json=as_json), json=as_json) == action


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("obs", OBSERVATIONS, ids=lambda o: o.id)
def test_observation_round_trips(obs, as_json):
    assert decode_observation(encode(obs, json=as_json), json=as_json) == obs


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_reply_round_trips(reply, as_json):
    assert decode_reply(encode(reply, json=as_json), json=as_json) == reply


def test_every_action_kind_has_a_sample():
    assert {a.__struct_config__.tag for a in ACTIONS} == set(ACTION_KINDS)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*/*")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_payload_still_decodes(path):
    as_json = path.suffix == ".json"
    family, index = path.stem.rsplit("-", 1)
    decoders = {
        "actions": (lambda d: decode_action(d, json=as_json), ACTIONS),
        "observations": (lambda d: decode_observation(d, json=as_json), OBSERVATIONS),
        "replies": (lambda d: decode_reply(d, json=as_json), REPLIES),
        "specs": (lambda d: (msgspec.json.decode(d, type=SessionSpec) if as_json else msgspec.msgpack.decode(d, type=SessionSpec)), SPECS),
    }
    decode, samples = decoders[family]
    # Old payloads must decode; v1 payloads also still equal today's samples.
    decoded = decode(path.read_bytes())
    if path.parent.name == "v1":
        assert decoded == samples[int(index)]


def test_undecodable_payload_is_bad_payload():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(b"\xc1\xff garbage")
    assert info.value.code == codes.BAD_PAYLOAD and info.value.action_id is None


def test_unknown_kind_names_the_known_ones_and_keeps_the_id():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(b'{"kind": "teleport", "id": "x1"}', json=True)
    assert info.value.code == codes.UNKNOWN_KIND
    assert info.value.action_id == "x1"
    assert "cmd_run" in info.value.message


def test_wrong_field_type_is_bad_payload_with_the_field_named():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(b'{"kind": "cmd_run", "id": "x2", "command": 5}', json=True)
    assert info.value.code == codes.BAD_PAYLOAD
    assert "command" in info.value.message and info.value.action_id == "x2"


def test_missing_kind_is_bad_payload():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(b'{"id": "x3", "command": "ls"}', json=True)
    assert info.value.code == codes.BAD_PAYLOAD and "kind" in info.value.message


def test_kind_differing_from_subject_is_kind_mismatch():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(encode(ACTIONS[0]), subject_kind="file_read")
    assert info.value.code == codes.KIND_MISMATCH and info.value.action_id == "a1"


def test_non_object_payload_is_bad_payload():
    with pytest.raises(ActionDecodeError) as info:
        decode_action(b"[1, 2]", json=True)
    assert info.value.code == codes.BAD_PAYLOAD


def test_schema_names_every_event():
    schema = json_schema()
    names = set(schema["$defs"])
    assert {"CmdRun", "CmdOutput", "CmdChunk", "FileEdit", "FileEdited", "Error", "SessionInfo", "SessionSpec"} <= names
    tags = {d["properties"]["kind"]["enum"][0] for d in schema["$defs"].values()
            if "enum" in d.get("properties", {}).get("kind", {})}  # SecurityRule.kind is a plain field
    assert set(ACTION_KINDS) <= tags


def test_error_replies_decode_as_reply_union():
    error = next(r for r in REPLIES if isinstance(r, ErrorReply))
    reply = decode_reply(encode(error))
    assert isinstance(reply, ErrorReply) and reply == error
