"""The audit log's on-disk format: one record per line, hash-chained, optionally signed.

A record is one JSON object on one line (UTF-8, ``\\n`` ends it). Its **canonical bytes** are the
record without ``sig``, encoded with keys in sorted order at every level and no whitespace; the
last key is therefore always ``v`` (an integer), so canonical bytes end in a digit and ``}``.
A signed record's line is its canonical bytes with ``,"sig":"<base64>"`` inserted before the
closing brace; an unsigned record's line *is* its canonical bytes. A verifier takes the bytes
of the line, drops a trailing ``,"sig":"…"}`` (replacing it by ``}``) and hashes or checks what
remains, never a re-serialisation (number formatting differs between JSON libraries).

``prev`` is the SHA-256 (lower-case hex) of the previous record's canonical bytes, across day
files; the first record of a log has ``prev`` = :data:`GENESIS` (64 zeros). ``sig`` is the
Ed25519 signature (standard base64, padded) of the record's canonical bytes.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import os
import re
from typing import Any

import msgspec

from protocol import CorralError

FORMAT_VERSION = 1
GENESIS = "0" * 64
"""The ``prev`` of a log's first record."""

FILE_NAME = re.compile(r"audit-(\d{4}-\d{2}-\d{2})\.jsonl")
"""One file per UTC day: ``audit-YYYY-MM-DD.jsonl``; files are read in name (= date) order."""

# Error codes of the audit log (local to the audit tools; never on the wire).
AUDIT_LOG_CORRUPT = "audit_log_corrupt"
AUDIT_LOCKED = "audit_locked"
AUDIT_STREAM_RESET = "audit_stream_reset"
AUDIT_KEY_INVALID = "audit_key_invalid"
AUDIT_KEY_EXISTS = "audit_key_exists"
AUDIT_NO_LOG = "audit_no_log"
AUDIT_CHAIN_BROKEN = "audit_chain_broken"


class AuditError(CorralError):
    """A problem with an audit log or key that a person must look at; carries a stable code
    (one of the ``AUDIT_*`` above; local to the audit tools, never on the wire)."""


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One record as stored (``sig`` aside). Field names are the JSON keys."""

    seq: int
    """The event's stream sequence (JetStream); strictly increasing along the log."""
    time: str
    """When the broker stored the event (ISO 8601, UTC)."""
    subject: str
    session_id: str
    tenant: str
    """``""`` for the deployment's own sessions, else the tenant of ``<prefix>.t.<tenant>.session…``."""
    channel: str
    """``action``, ``obs`` or ``status``."""
    kind: str
    # The event as it was published, decoded generically (every payload is a public wire struct;
    # an undecodable one is kept as ``{"undecodable": true, "data_b64": ...}``).
    event: Any
    prev: str
    v: int = FORMAT_VERSION


_canonical = msgspec.json.Encoder(order="sorted")
_entry_decoder = msgspec.json.Decoder(Entry)
_SIG_TAIL = re.compile(rb',"sig":"([A-Za-z0-9+/=]*)"\}\Z')


def canonical_bytes(entry: Entry) -> bytes:
    return _canonical.encode(entry)


def digest(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def line_of(canonical: bytes, signature: bytes | None) -> bytes:
    """The stored line (without its newline) of a record with these canonical bytes."""
    if signature is None:
        return canonical
    return canonical[:-1] + b',"sig":"' + base64.b64encode(signature) + b'"}'


def split_line(line: bytes) -> tuple[bytes, bytes | None]:
    """(canonical bytes, signature or None) of a stored line. A ``sig`` that is not valid base64
    gives a signature of ``b""`` (it then fails to verify)."""
    match = _SIG_TAIL.search(line)
    if match is None:
        return line, None
    try:
        signature = base64.b64decode(match.group(1), validate=True)
    except binascii.Error:
        signature = b""
    return line[: match.start()] + b"}", signature


def parse_entry(canonical: bytes) -> Entry:
    """Raises msgspec.DecodeError (or ValidationError) when the bytes are not a record."""
    return _entry_decoder.decode(canonical)


def day_file(day: datetime.date) -> str:
    return f"audit-{day.isoformat()}.jsonl"


def log_files(directory: str) -> list[str]:
    """The day files of a log directory, oldest first (full paths); other files are ignored."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names) if FILE_NAME.fullmatch(n)]


def file_day(path: str) -> datetime.date:
    match = FILE_NAME.fullmatch(os.path.basename(path))
    assert match is not None, path
    return datetime.date.fromisoformat(match.group(1))
