"""Audit: a tamper-evident log of every action, observation, decision and status of every session.

* :class:`AuditWriter` — the observer: a durable pull consumer on the whole stream appending
  hash-chained (optionally Ed25519-signed) records to one JSON Lines file per UTC day.
* :func:`verify_log`, :func:`export_session` — check a log, read one session's trail out of it.
* :func:`records` — the same events read live from the stream (``corral audit tail``).

The format (canonical bytes, ``prev``, ``sig``) is defined in ``_format`` and in the README's
Audit section, so that anyone can verify a log without corral.
"""

from ._format import (
    AUDIT_CHAIN_BROKEN,
    AUDIT_KEY_EXISTS,
    AUDIT_KEY_INVALID,
    AUDIT_LOCKED,
    AUDIT_LOG_CORRUPT,
    AUDIT_NO_LOG,
    AUDIT_STREAM_RESET,
    FORMAT_VERSION,
    GENESIS,
    AuditError,
    Entry,
    canonical_bytes,
    digest,
    line_of,
    log_files,
    split_line,
)
from ._keys import generate_key_pair, load_private_key, load_public_key
from ._log import AuditLog, Incoming, utc_now
from ._replay import AuditRecord, records
from ._verify import Problem, VerifyReport, export_session, verify_log
from ._writer import AuditWriter, AuditWriterConfig

__all__ = [
    "AUDIT_CHAIN_BROKEN", "AUDIT_KEY_EXISTS", "AUDIT_KEY_INVALID", "AUDIT_LOCKED", "AUDIT_LOG_CORRUPT",
    "AUDIT_NO_LOG", "AUDIT_STREAM_RESET", "FORMAT_VERSION", "GENESIS", "AuditError", "AuditLog", "AuditRecord",
    "AuditWriter", "AuditWriterConfig", "Entry", "Incoming", "Problem", "VerifyReport", "canonical_bytes", "digest",
    "export_session", "generate_key_pair", "line_of", "load_private_key", "load_public_key", "log_files", "records",
    "split_line", "utc_now", "verify_log",
]
