"""Every NATS subject corral uses comes from here; never f-string a subject at a call site."""

from __future__ import annotations

import re

import msgspec

DEFAULT_PREFIX = "corral"
STREAM = "CORRAL"
KV_WORKERS = "corral_workers"
KV_SESSIONS = "corral_sessions"


TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""A tenant's name is one subject token: lower-case letters, digits, ``_`` and ``-``, at most 32."""


class Subjects(msgspec.Struct, frozen=True):
    """Subject names under one prefix (default ``corral``), for the deployment's own clients or,
    with ``tenant``, for one tenant's: a tenant's control requests and sessions live under
    ``<prefix>.t.<tenant>``, so that broker permissions on that prefix fence the tenant in.
    ``tenant="*"`` gives the wildcards the control plane subscribes to for every tenant."""

    prefix: str = DEFAULT_PREFIX
    tenant: str = ""

    @property
    def base(self) -> str:
        """Where this client's control requests and sessions live."""
        return f"{self.prefix}.t.{self.tenant}" if self.tenant else self.prefix

    def for_tenant(self, tenant: str) -> Subjects:
        return Subjects(self.prefix, tenant)

    @property
    def inbox_prefix(self) -> str:
        """Replies to a tenant's requests come here (the broker lets the tenant read nothing else)."""
        return f"{self.base}.inbox"

    # control: request/reply
    def ctl(self, verb: str) -> str:
        return f"{self.base}.ctl.{verb}"

    # session data path
    def action(self, session_id: str, kind: str) -> str:
        return f"{self.base}.session.{session_id}.action.{kind}"

    def actions(self, session_id: str = "*") -> str:
        return f"{self.base}.session.{session_id}.action.>"

    def obs(self, session_id: str, kind: str) -> str:
        return f"{self.base}.session.{session_id}.obs.{kind}"

    def observations(self, session_id: str = "*") -> str:
        return f"{self.base}.session.{session_id}.obs.>"

    def status(self, session_id: str) -> str:
        return f"{self.base}.session.{session_id}.status"

    def session(self, session_id: str = "*") -> str:
        """Everything of one session (or, with the default, of all of them)."""
        return f"{self.base}.session.{session_id}.>"

    def statuses(self) -> str:
        return f"{self.base}.session.*.status"

    def lookup(self, session_id: str) -> str:
        """Request/reply to the owning worker: the stored observation of an action id.

        Deliberately outside ``<prefix>.session.>``: the stream would answer requests there."""
        return f"{self.base}.lookup.{session_id}"

    @property
    def all_sessions(self) -> str:
        return f"{self.base}.session.>"

    @property
    def stream_subjects(self) -> list[str]:
        """What the stream captures: every session of the deployment's clients and of every tenant."""
        return [f"{self.prefix}.session.>", f"{self.prefix}.t.*.session.>"]

    # workers
    def worker(self, worker_id: str, verb: str) -> str:
        return f"{self.prefix}.worker.{worker_id}.{verb}"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}.worker.*.heartbeat"

    # parsing
    def tenant_of(self, subject: str) -> str | None:
        """The tenant of a subject under this prefix: ``""`` for the deployment's own, None if the
        subject is not under the prefix at all."""
        if subject.startswith(self.prefix + ".t."):
            return subject[len(self.prefix) + 3:].partition(".")[0]
        return "" if subject.startswith(self.prefix + ".") else None

    def action_kind(self, subject: str) -> str | None:
        """Everything after ``.action.`` of an action subject (extra tokens included, so that a
        subject ``...action.file_read.extra`` never passes for a ``file_read``); None if not one."""
        rest = self._session_rest(subject)
        if rest is None:
            return None
        _sid, sep, kind = rest.partition(".action.")
        return kind if sep else None

    def parse_session_subject(self, subject: str) -> tuple[str, str, str] | None:
        """``prefix.session.<sid>.<channel>[.<kind>]`` -> (sid, channel, kind); None if not one."""
        rest = self._session_rest(subject)
        if rest is None:
            return None
        parts = rest.split(".")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        if len(parts) == 2:
            return parts[0], parts[1], ""
        return None

    def _session_rest(self, subject: str) -> str | None:
        """What follows ``<prefix>[.t.<tenant>].session.`` (any tenant's, unless this names one)."""
        tenant = self.tenant_of(subject)
        if tenant is None or (self.tenant not in ("", "*") and tenant != self.tenant):
            return None
        head = f"{self.prefix}.t.{tenant}.session." if tenant else f"{self.prefix}.session."
        return subject[len(head):] if subject.startswith(head) else None
