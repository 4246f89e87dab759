"""The actor backbone: the kernel, the stream and its answers, the registry, the controller, audit.

What other packages use comes from here; the ``_modules`` behind it are private. The controller,
the audit writer and the embedded broker are imported on first use (``actors.Controller``).
"""

from ._answers import (
    CONFIRM_TIMEOUT_S,
    FINAL_KINDS,
    answer_unanswered,
    answered_in_stream,
    final_headers,
    final_subjects,
    publish_confirmed,
)
from ._broker import StreamConfigOptions, ensure_stream, sessions_bucket, stream_name, while_api_away, workers_bucket
from ._kernel import Actor, InboxFull, Supervisor, cancel_and_wait
from ._registry import SessionRecord, SessionTable, kv_delete, kv_items, load_sessions

__all__ = [
    "CONFIRM_TIMEOUT_S", "FINAL_KINDS", "Actor", "AuditWriter", "Controller", "ControllerConfig", "EmbeddedNats",
    "InboxFull", "SessionRecord", "SessionTable", "StreamConfigOptions", "Supervisor", "answer_unanswered",
    "answered_in_stream", "cancel_and_wait", "ensure_stream", "final_headers", "final_subjects", "kv_delete",
    "kv_items", "load_sessions", "publish_confirmed", "sessions_bucket", "stream_name", "while_api_away", "workers_bucket",
]


def __getattr__(name: str) -> object:
    if name in ("Controller", "ControllerConfig"):
        from . import controller

        return getattr(controller, name)
    if name == "AuditWriter":
        from .audit import AuditWriter

        return AuditWriter
    if name == "EmbeddedNats":
        from .embedded import EmbeddedNats

        return EmbeddedNats
    raise AttributeError(f"module 'actors' has no attribute {name!r}")
