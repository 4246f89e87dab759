"""Stable error codes on the wire, and the one exception root of the protocol package."""

from __future__ import annotations

from typing import Final

# Codes are part of the public contract: never rename one, only add.
BAD_PAYLOAD: Final = "bad_payload"
UNKNOWN_KIND: Final = "unknown_kind"
KIND_MISMATCH: Final = "kind_mismatch"
UNKNOWN_SESSION: Final = "unknown_session"
UNSUPPORTED: Final = "unsupported"
FILE_NOT_FOUND: Final = "file_not_found"
IS_A_DIRECTORY: Final = "is_a_directory"
BINARY_FILE: Final = "binary_file"
FILE_TOO_LARGE: Final = "file_too_large"
PERMISSION_DENIED: Final = "permission_denied"
INVALID_ARGUMENT: Final = "invalid_argument"
EDIT_FAILED: Final = "edit_failed"
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
NO_CAPACITY: Final = "no_capacity"
WORKER_UNAVAILABLE: Final = "worker_unavailable"
SANDBOX_FAILED: Final = "sandbox_failed"
SANDBOX_DIED: Final = "sandbox_died"
SANDBOX_LOST: Final = "sandbox_lost"
INVALID_SPEC: Final = "invalid_spec"
TIMEOUT: Final = "timeout"
INTERNAL: Final = "internal"
SESSION_CLOSED: Final = "session_closed"
"""The session was closed while the action was queued or running."""

ALL_CODES: Final = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and k != "ALL_CODES"
)


class CorralError(Exception):
    """Root of every error the protocol package raises; carries the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestError(CorralError):
    """A control request was answered with an error reply."""


class ConnectionLost(CorralError):
    """The broker could not be reached or answered too late."""
