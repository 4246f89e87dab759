"""What each role may publish and subscribe on the broker (``corral up --secure``).

One user per role with static permissions: a tenant's users are fenced in by the tenant token of
``<prefix>.t.<tenant>.…`` (``Subjects(prefix, tenant)``), so no session ever needs a permission
change of its own. The deployment's own users share the core account (JetStream, KV); each
tenant has an account of its own that imports exactly its subjects (``tenant_shares``), so the
reply subject of a tenant's publish can only ever name a subject of the tenant's own account
(see docs/security.md, "Tenants"). Pure data: ``actors.secure`` renders it into the server's
configuration file.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from protocol import Subjects

from ._broker import stream_name

Role = Literal["admin", "controller", "worker", "observer", "client", "approver"]
INTERNAL_ROLES: tuple[Role, ...] = ("admin", "controller", "worker", "observer")
"""The deployment's own users, made once per data dir; tenants' users are ``client`` or ``approver``."""
TENANT_ROLES: tuple[Role, ...] = ("client", "approver")
OBSERVER_CONSUMERS = ("audit_writer",)
"""The durable consumers an observer may create and read (the audit writer's); nothing else of JetStream."""


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    pub_allow: list[str]
    pub_deny: list[str] = []
    sub_allow: list[str]
    sub_deny: list[str] = []
    allow_responses: bool = False
    """May publish one answer to the reply subject of each request it received (controller, worker)."""

    def as_config(self) -> dict[str, object]:
        """The ``permissions`` block of one user in nats-server's configuration."""
        publish: dict[str, list[str]] = {"allow": self.pub_allow}
        if self.pub_deny:
            publish["deny"] = self.pub_deny
        subscribe: dict[str, list[str]] = {"allow": self.sub_allow}
        if self.sub_deny:
            subscribe["deny"] = self.sub_deny
        block: dict[str, object] = {"publish": publish, "subscribe": subscribe}
        if self.allow_responses:
            block["allow_responses"] = True
        return block


def inbox_prefix(role: Role, prefix: str, tenant: str = "") -> str:
    """Where a user's request replies arrive: a tenant's under its own subjects, each internal
    role's under ``_INBOX.<role>`` (so that an observer cannot read the controller's KV reads)."""
    if role in TENANT_ROLES:
        return Subjects(prefix, tenant).inbox_prefix
    return f"_INBOX.{role}" if role != "admin" else "_INBOX"


def permissions(role: Role, prefix: str, tenant: str = "") -> Permissions:
    """The broker permissions of ``role`` under ``prefix`` (``tenant`` for client and approver)."""
    p = prefix
    js_internal = ["$JS.API.>", "$KV.>", "$JS.ACK.>", "$JS.FC.>"]
    match role:
        case "admin":  # the operator's CLI: everything, as without --secure
            return Permissions(pub_allow=[">"], sub_allow=[">"], allow_responses=True)
        case "controller":
            return Permissions(
                pub_allow=[f"{p}.>", *js_internal],
                sub_allow=[f"{p}.ctl.*", f"{p}.t.*.ctl.*", f"{p}.worker.*.heartbeat",
                           f"{p}.session.*.action.>", f"{p}.session.*.status",
                           f"{p}.t.*.session.*.action.>", f"{p}.t.*.session.*.status",
                           f"{inbox_prefix(role, p)}.>"],
                allow_responses=True)
        case "worker":
            return Permissions(
                pub_allow=[f"{p}.session.>", f"{p}.t.*.session.>", f"{p}.worker.>", *js_internal],
                sub_allow=[f"{p}.worker.*.*", f"{p}.lookup.*", f"{p}.t.*.lookup.*", f"{inbox_prefix(role, p)}.>"],
                allow_responses=True)
        case "observer":
            stream = stream_name(Subjects(p))
            api = "$JS.API"
            consumers = [s for c in OBSERVER_CONSUMERS for s in (
                f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{c}", f"{api}.CONSUMER.CREATE.{stream}.{c}",
                f"{api}.CONSUMER.CREATE.{stream}.{c}.>", f"{api}.CONSUMER.INFO.{stream}.{c}",
                # the writer re-creates its consumer where its log ends (actors.audit)
                f"{api}.CONSUMER.DELETE.{stream}.{c}",
                f"{api}.CONSUMER.MSG.NEXT.{stream}.{c}", f"$JS.ACK.{stream}.{c}.>")]
            return Permissions(
                pub_allow=[*consumers, f"{api}.STREAM.INFO.{stream}"],
                sub_allow=[f"{p}.session.>", f"{p}.t.*.session.>", f"{p}.worker.*.heartbeat",
                           f"{inbox_prefix(role, p)}.>"])
        case "client" | "approver":
            base = Subjects(p, tenant).base
            deny = [f"{base}.session.*.action.confirm", f"{base}.session.*.action.confirm.>"]
            return Permissions(
                pub_allow=[f"{base}.ctl.>", f"{base}.session.*.action.>", f"{base}.lookup.*"],
                pub_deny=deny if role == "client" else [],
                sub_allow=[f"{base}.session.*.obs.>", f"{base}.session.*.status", f"{base}.inbox.>"])
    raise ValueError(f"unknown role {role!r}")


def tenant_shares(prefix: str, tenant: str) -> list[tuple[str, str]]:
    """What the core account shares with a tenant's account: (``service`` | ``stream``, subject).

    Services carry the tenant's publishes (control requests, actions, lookups) into the core
    account; their replies come back through the import, never to a subject the tenant names.
    Streams carry its sessions' observations and statuses out."""
    base = Subjects(prefix, tenant).base
    return [("service", f"{base}.ctl.>"), ("service", f"{base}.session.*.action.>"), ("service", f"{base}.lookup.*"),
            ("stream", f"{base}.session.*.obs.>"), ("stream", f"{base}.session.*.status")]
