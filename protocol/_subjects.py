"""Every NATS subject corral uses comes from here; never f-string a subject at a call site."""

from __future__ import annotations

import msgspec

DEFAULT_PREFIX = "corral"
STREAM = "CORRAL"
KV_WORKERS = "corral_workers"
KV_SESSIONS = "corral_sessions"


class Subjects(msgspec.Struct, frozen=True):
    """Subject names under one prefix (default ``corral``)."""

    prefix: str = DEFAULT_PREFIX

    # control: request/reply
    def ctl(self, verb: str) -> str:
        return f"{self.prefix}.ctl.{verb}"

    # session data path
    def action(self, session_id: str, kind: str) -> str:
        return f"{self.prefix}.session.{session_id}.action.{kind}"

    def actions(self, session_id: str = "*") -> str:
        return f"{self.prefix}.session.{session_id}.action.>"

    def obs(self, session_id: str, kind: str) -> str:
        return f"{self.prefix}.session.{session_id}.obs.{kind}"

    def observations(self, session_id: str = "*") -> str:
        return f"{self.prefix}.session.{session_id}.obs.>"

    def status(self, session_id: str) -> str:
        return f"{self.prefix}.session.{session_id}.status"

    def session(self, session_id: str = "*") -> str:
        """Everything of one session (or, with the default, of all of them)."""
        return f"{self.prefix}.session.{session_id}.>"

    def statuses(self) -> str:
        return f"{self.prefix}.session.*.status"

    def lookup(self, session_id: str) -> str:
        """Request/reply to the owning worker: the stored observation of an action id.

        Deliberately outside ``<prefix>.session.>``: the stream would answer requests there."""
        return f"{self.prefix}.lookup.{session_id}"

    @property
    def all_sessions(self) -> str:
        return f"{self.prefix}.session.>"

    # workers
    def worker(self, worker_id: str, verb: str) -> str:
        return f"{self.prefix}.worker.{worker_id}.{verb}"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}.worker.*.heartbeat"

    # parsing
    def action_kind(self, subject: str) -> str | None:
        """Everything after ``.action.`` of an action subject (extra tokens included, so that a
        subject ``...action.file_read.extra`` never passes for a ``file_read``); None if not one."""
        head = self.prefix + ".session."
        if not subject.startswith(head):
            return None
        _sid, sep, kind = subject[len(head):].partition(".action.")
        return kind if sep else None

    def parse_session_subject(self, subject: str) -> tuple[str, str, str] | None:
        """``prefix.session.<sid>.<channel>[.<kind>]`` -> (sid, channel, kind); None if not one."""
        head = self.prefix + ".session."
        if not subject.startswith(head):
            return None
        parts = subject[len(head):].split(".")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        if len(parts) == 2:
            return parts[0], parts[1], ""
        return None
