"""Encoding on the wire: MessagePack by default, JSON when the publisher says so.

A publisher that sends JSON sets the NATS header ``Content-Type: application/json``;
everything answering it answers in JSON too.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Mapping, TypeVar

import msgspec

from . import _errors as codes
from ._events import AnyAction, AnyObservation, AnyReply
from ._validate import Invalid, check_action, valid_id

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
_mp_raw = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])
_json_raw = msgspec.json.Decoder(dict[str, msgspec.Raw])


def wants_json(headers: Mapping[str, str] | None) -> bool:
    return bool(headers) and headers.get(CONTENT_TYPE, "").startswith(JSON_CONTENT_TYPE)  # type: ignore[union-attr]


def encode(obj: Any, *, json: bool = False) -> bytes:
    return _json_encoder.encode(obj) if json else _mp_encoder.encode(obj)


def headers_for(json: bool) -> dict[str, str] | None:
    return JSON_HEADERS if json else None


def decode_observation(data: bytes, *, json: bool = False) -> AnyObservation:
    with _depth_guard():
        return (_json_obs if json else _mp_obs).decode(data)


def decode_reply(data: bytes, *, json: bool = False) -> AnyReply:
    with _depth_guard():
        return (_json_reply if json else _mp_reply).decode(data)


def decode_as(data: bytes, type_: type[T], *, json: bool = False) -> T:
    """Decode a control request body; an empty body is the type's defaults."""
    if not data.strip():
        data = b"{}" if json else b"\x80"
    with _depth_guard():
        if json:
            return msgspec.json.decode(data, type=type_)
        return msgspec.msgpack.decode(data, type=type_)


@contextlib.contextmanager
def _depth_guard() -> Iterator[None]:
    """A payload nested deeper than the decoder can recurse is just another undecodable one."""
    try:
        yield
    except RecursionError:
        raise msgspec.DecodeError("payload is nested too deeply to decode") from None


class ActionDecodeError(Exception):
    """An action payload that cannot become an action; carries what could be read of it."""

    def __init__(self, code: str, message: str, action_id: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action_id = action_id


def decode_action(data: bytes, *, json: bool = False, subject_kind: str | None = None) -> AnyAction:
    """Decode and check one action, or raise ActionDecodeError with a stable code.

    The fast path is one typed decode and a few checks (``_validate``); only a failure pays for
    a second, lenient decode that finds out what was wrong and the action id, so the error can
    name its cause. Nothing a publisher sends makes this raise anything else: a payload nested
    deep enough to exhaust the decoder's recursion is ``bad_payload`` like any other.
    """
    try:
        action = (_json_action if json else _mp_action).decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _diagnose(data, json, exc) from None
    if subject_kind is not None and action.__struct_config__.tag != subject_kind:
        raise ActionDecodeError(
            codes.KIND_MISMATCH,
            f"payload kind {action.__struct_config__.tag!r} does not match the subject's kind {subject_kind!r}",
            action.id if valid_id(action.id) else None,
        )
    try:
        check_action(action)
    except Invalid as exc:
        raise ActionDecodeError(exc.code, exc.message, action.id if valid_id(action.id) else None) from None
    return action


_JSON_ID = re.compile(rb'"id"\s*:\s*"([!-.0-~]{1,256})"')


def _diagnose(data: bytes, json: bool, exc: Exception) -> ActionDecodeError:
    from ._events import ACTION_KINDS

    if isinstance(exc, RecursionError):
        found = _JSON_ID.search(data[:4096]) if json else None
        return ActionDecodeError(codes.BAD_PAYLOAD, "payload is nested too deeply to decode",
                                 found.group(1).decode() if found else None)
    try:
        raw = (_json_raw if json else _mp_raw).decode(data)
    except (msgspec.DecodeError, RecursionError) as inner:
        how = "JSON" if json else "MessagePack (send JSON with header Content-Type: application/json)"
        return ActionDecodeError(codes.BAD_PAYLOAD, f"payload is not a valid {how} object: {inner}", None)
    action_id = _lenient_str(raw.get("id"), json)
    action_id = action_id if valid_id(action_id) else None
    kind = _lenient_str(raw.get("kind"), json)
    if kind is None:
        return ActionDecodeError(codes.BAD_PAYLOAD, "payload has no 'kind' field (a string)", action_id)
    if kind not in ACTION_KINDS:
        return ActionDecodeError(
            codes.UNKNOWN_KIND, f"unknown action kind {kind[:80]!r}; known kinds: {', '.join(ACTION_KINDS)}", action_id
        )
    return ActionDecodeError(codes.BAD_PAYLOAD, f"invalid {kind} action: {exc}", action_id)


def _lenient_str(value: msgspec.Raw | None, json: bool) -> str | None:
    """A top-level field that should be a string, or None (absent, another type, undecodable)."""
    if value is None:
        return None
    try:
        decoded = msgspec.json.decode(value) if json else msgspec.msgpack.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return None
    return decoded if isinstance(decoded, str) else None
