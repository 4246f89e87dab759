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
IMAGE_NOT_FOUND: Final = "image_not_found"
"""The sandbox image is not where the backend looks (the engine, the cluster's nodes); nothing pulls it."""
SANDBOX_DIED: Final = "sandbox_died"
SANDBOX_LOST: Final = "sandbox_lost"
INVALID_SPEC: Final = "invalid_spec"
TIMEOUT: Final = "timeout"
INTERNAL: Final = "internal"
SESSION_CLOSED: Final = "session_closed"
"""The session was closed while the action was queued or running."""
ACTION_DENIED: Final = "action_denied"
"""A gate (security analyzer) refused the action before it ran (the policy's ``block``)."""
ACTION_REJECTED: Final = "action_rejected"
"""A held action was rejected by a ``confirm`` with ``approve: false``."""
CONFIRMATION_TIMEOUT: Final = "confirmation_timeout"
"""A held action got no ``confirm`` in time."""
NOT_HELD: Final = "not_held"
"""A ``confirm`` named an action that is not waiting for confirmation."""
NO_WORKERS: Final = "no_workers"
"""No worker is registered at all."""
BACKEND_UNAVAILABLE: Final = "backend_unavailable"
"""No registered worker runs the backend the session asks for."""
WORKER_DRAINING: Final = "worker_draining"
"""Every worker that could run the session is draining (or the one asked is)."""
WORKER_FULL: Final = "worker_full"
"""The worker asked to start a sandbox has no free slot (the controller places again)."""
PLUGIN_UNAVAILABLE: Final = "plugin_unavailable"
"""The sandbox's image (or environment) cannot serve a plugin the session asks for; the message
names the image variant to build."""
PLUGIN_NOT_ENABLED: Final = "plugin_not_enabled"
"""An action of a plugin's kind in a session that did not ask for that plugin."""
NOT_EXPOSED: Final = "not_exposed"
"""``corral.ctl.unexpose`` named a port that is not forwarded."""
UNKNOWN_TOOL: Final = "unknown_tool"
"""``mcp_call`` named a tool no MCP server of the session offers (or a server it does not have)."""
AMBIGUOUS_TOOL: Final = "ambiguous_tool"
"""``mcp_call`` without ``server`` named a tool that several servers offer; the message lists them."""
MCP_UNAVAILABLE: Final = "mcp_unavailable"
"""An MCP server could not be started or reached; the message carries its stderr's tail."""
MCP_SERVER_DIED: Final = "mcp_server_died"
"""An MCP server died (or its connection broke) during the call; the next call starts it afresh."""
NOT_PERMITTED: Final = "not_permitted"
"""A tenant's client asked for what only the deployment's operator may (``workers``, ``drain``,
replaying the stream)."""

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
