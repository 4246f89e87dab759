"""Encoding on the wire: MessagePack by default, JSON when the publisher says so.

A publisher that sends JSON sets the NATS header ``Content-Type: application/json``;
everything answering it answers in JSON too.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

import msgspec

from . import _errors as codes
from ._events import AnyAction, AnyObservation, AnyReply

JSON_CONTENT_TYPE = "application/json"
CONTENT_TYPE = "Content-Type"
JSON_HEADERS: dict[str, str] = {CONTENT_TYPE: JSON_CONTENT_TYPE}

T = TypeVar("T")

_mp_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
_mp_action = msgspec.msgpack.Decoder(AnyAction)
_json_action = msgspec.json.Decoder(AnyAction)
_mp_obs = msgspec.msgpack.Decoder(AnyObservation)
_json_obs = msgspec.json.Decoder(AnyObservation)
_mp_reply = msgspec.msgpack.Decoder(AnyReply)
_json_reply = msgspec.json.Decoder(AnyReply)
_mp_any = msgspec.msgpack.Decoder()
_json_any = msgspec.json.Decoder()


def wants_json(headers: Mapping[str, str] | None) -> bool:
    return bool(headers) and headers.get(CONTENT_TYPE, "").startswith(JSON_CONTENT_TYPE)  # type: ignore[union-attr]


def encode(obj: Any, *, json: bool = False) -> bytes:
    return _json_encoder.encode(obj) if json else _mp_encoder.encode(obj)


def headers_for(json: bool) -> dict[str, str] | None:
    return JSON_HEADERS if json else None


def decode_observation(data: bytes, *, json: bool = False) -> AnyObservation:
    return (_json_obs if json else _mp_obs).decode(data)


def decode_reply(data: bytes, *, json: bool = False) -> AnyReply:
    return (_json_reply if json else _mp_reply).decode(data)


def decode_as(data: bytes, type_: type[T], *, json: bool = False) -> T:
    """Decode a control request body; an empty body is the type's defaults."""
    if not data.strip():
        data = b"{}" if json else b"\x80"
    if json:
        return msgspec.json.decode(data, type=type_)
    return msgspec.msgpack.decode(data, type=type_)


class ActionDecodeError(Exception):
    """An action payload that cannot become an action; carries what could be read of it."""

    def __init__(self, code: str, message: str, action_id: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action_id = action_id


def decode_action(data: bytes, *, json: bool = False, subject_kind: str | None = None) -> AnyAction:
    """Decode one action, or raise ActionDecodeError with a stable code.

    The fast path is one typed decode; only a failure pays for a second, lenient one
    that finds out what was wrong (and the action id, so the error can name its cause).
    """
    try:
        action = (_json_action if json else _mp_action).decode(data)
    except msgspec.DecodeError as exc:
        raise _diagnose(data, json, exc) from None
    if subject_kind is not None and action.__struct_config__.tag != subject_kind:
        raise ActionDecodeError(
            codes.KIND_MISMATCH,
            f"payload kind {action.__struct_config__.tag!r} does not match the subject's kind {subject_kind!r}",
            action.id,
        )
    return action


def _diagnose(data: bytes, json: bool, exc: msgspec.DecodeError) -> ActionDecodeError:
    from ._events import ACTION_KINDS

    try:
        raw = (_json_any if json else _mp_any).decode(data)
    except msgspec.DecodeError as inner:
        how = "JSON" if json else "MessagePack (send JSON with header Content-Type: application/json)"
        return ActionDecodeError(codes.BAD_PAYLOAD, f"payload is not valid {how}: {inner}", None)
    if not isinstance(raw, dict):
        return ActionDecodeError(codes.BAD_PAYLOAD, f"payload must be an object, got {type(raw).__name__}", None)
    action_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    kind = raw.get("kind")
    if kind is None:
        return ActionDecodeError(codes.BAD_PAYLOAD, "payload has no 'kind' field", action_id)
    if kind not in ACTION_KINDS:
        return ActionDecodeError(
            codes.UNKNOWN_KIND, f"unknown action kind {kind!r}; known kinds: {', '.join(ACTION_KINDS)}", action_id
        )
    return ActionDecodeError(codes.BAD_PAYLOAD, f"invalid {kind} action: {exc}", action_id)
