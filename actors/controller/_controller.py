"""The controller: placement, the session registry, idle reaping and worker liveness.

It serves ``corral.ctl.<verb>`` in a queue group, so several controllers share the requests; the
session registry lives in JetStream KV (``_registry.SessionTable``), which every controller
watches, and workers' heartbeats reach all of them. Creates do not take a request slot while they
wait for room (``_placement``): a full cluster never keeps a ``close`` — the thing that frees room —
waiting. What must happen once (reaping, marking a silent worker's sessions lost, abandoning
lost sessions, answering actions for unknown sessions) is done by the holder of a lease
(``_lease``). The data path (action -> worker -> observation) never passes through a controller.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import time
from typing import Any, Awaitable, Callable

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
import nats.js.errors
import structlog

from protocol import (
    ActionDecodeError,
    Empty,
    Error,
    ErrorReply,
    PortInfo,
    PortRef,
    SandboxCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SessionSpec,
    TENANT_NAME,
    Subjects,
    VscodeInfo,
    WorkerInfo,
    WorkerList,
    WorkerRef,
    codes,
    connect_nats,
    decode_action,
    decode_as,
    decode_reply,
    encode,
    headers_for,
    new_id,
    spec_problem,
    unsubscribe_all,
    wants_json,
)

from .. import metrics
from .._answers import answer_unanswered, final_headers
from .._broker import StreamConfigOptions, ensure_stream, sessions_bucket, stream_name, workers_bucket
from .._kernel import Actor, InboxFull, Supervisor, cancel_and_wait
from .._registry import SessionRecord, SessionTable, kv_delete, kv_items
from ..secrets import live_secrets, without_secrets
from ._backlog import CreateBacklog
from ._lease import Lease
from ._placement import Placement

log = structlog.get_logger()

_REPLY_ERRORS = (nats.errors.TimeoutError, nats.errors.NoRespondersError)
FAST_VERBS = ("close", "get", "list", "workers", "pause", "resume", "drain", "expose", "unexpose")
ADMIN_VERBS = ("workers", "drain")
"""Verbs about the deployment, not a session: refused to tenants (``not_permitted``)."""
SLOW_VERBS = ("create", "vscode")
"""Verbs that may wait long (for room, for code-server to start): each runs as a task of its own."""
VSCODE_TIMEOUT_S = 90.0


class ControllerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "corral"
    creds: str | None = None
    """A credentials file to log in with (``corral up --secure`` gives the controller's)."""
    controller_id: str | None = None
    """Names this instance in the leadership lease; default a random id."""
    heartbeat_ttl_s: float = 10.0
    """A worker whose last heartbeat is older than this is dead; its sessions are lost."""
    default_idle_timeout_s: float | None = 3600.0
    reap_interval_s: float = 1.0
    create_timeout_s: float = 120.0
    create_lapse_s: float = 6.0
    """A create is given up on (and placed again elsewhere) when the worker starting it has sent no
    heartbeat for this long (three missed beats at the default interval)."""
    lost_grace_s: float = 60.0
    """How long a lost session may take to be recovered before its pending actions are answered
    with `sandbox_lost` and it is closed."""
    create_queue_timeout_s: float = 60.0
    """How long a create waits in line for a free slot when every worker is full."""
    max_waiting_creates: int = 4096
    placement_choices: int = 3
    """Best of K: how many workers with room are compared for each placement."""
    lease_ttl_s: float = 5.0
    """How long a dead leader's duties wait for another controller to take them over."""
    stream: StreamConfigOptions = StreamConfigOptions()


def _guarded(callback: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that no message can crash (it is logged; the next one is served)."""
    async def cb(msg: Msg) -> None:
        try:
            await callback(msg)
        except Exception:
            log.exception("controller_message_failed", subject=msg.subject)
    return cb


class Controller(Actor[Msg]):
    """Fast control requests go through the inbox; creates run as tasks of their own."""

    name = "controller"

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__(inbox_size=4096, concurrency=16)
        self._config = config
        self.controller_id = config.controller_id or "c" + new_id()[:12]
        self._subjects = Subjects(config.prefix)
        self._nc: Nats | None = None
        self._placement = Placement(choices=config.placement_choices, queue_timeout_s=config.create_queue_timeout_s)
        self._supervisor = Supervisor("controller")
        self._graves: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """Session id -> (its tenant, why it was lost)."""
        self._creates: set[asyncio.Task[None]] = set()
        self._subs: list[Any] = []
        self._leader_subs: list[Any] = []

    @property
    def leading(self) -> bool:
        return self._lease.held

    @property
    def _sessions(self) -> dict[str, SessionRecord]:
        return self._table.records

    @property
    def _every_tenant(self) -> tuple[Subjects, Subjects]:
        """Subjects of the deployment's own sessions, and the wildcards over every tenant's."""
        return self._subjects, self._subjects.for_tenant("*")

    def _of(self, info: SessionInfo) -> Subjects:
        """The subjects of one session: its tenant's."""
        return self._subjects.for_tenant(info.tenant)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, nc: Nats | None = None) -> None:
        self._nc = nc or await connect_nats(self._config.nats_url, name="corral-controller", creds=self._config.creds)
        js = self._nc.jetstream()
        await ensure_stream(js, self._subjects, self._config.stream)
        backlog = CreateBacklog(js, self._subjects, max_age_s=self._config.create_queue_timeout_s + 60)
        await backlog.start()
        self._placement.backlog = backlog
        self._table = SessionTable(await sessions_bucket(js, self._subjects))
        self._kv_workers = await workers_bucket(js, self._subjects)
        watcher = await self._table.load()
        await self._load_workers()
        self._lease = Lease(js, f"corral_leader_{self._subjects.prefix}", self.controller_id, ttl_s=self._config.lease_ttl_s)
        group = "corral-controller"
        for subjects in self._every_tenant:  # the deployment's own clients, and every tenant's
            for verb in SLOW_VERBS:
                self._subs.append(await self._nc.subscribe(subjects.ctl(verb), queue=group, cb=self._admit))
            for verb in FAST_VERBS:
                self._subs.append(await self._nc.subscribe(subjects.ctl(verb), queue=group, cb=self._enqueue))
        self._subs.append(await self._nc.subscribe(self._subjects.heartbeats, cb=_guarded(self._on_heartbeat)))
        self._supervisor.start("inbox", self.run)
        self._supervisor.start("registry", lambda: self._table.watch(watcher))
        await self._lease.step(self._lead, self._follow)  # the first controller leads at once
        self._supervisor.start("lease", lambda: self._lease.run(self._lead, self._follow))
        await self._nc.flush()
        log.info("controller_started", controller_id=self.controller_id, leading=self.leading,
                 sessions=len(self._sessions), workers=len(self._placement.workers))

    async def aclose(self) -> None:
        await unsubscribe_all(self._subs)
        await unsubscribe_all(self._leader_subs)
        await self.drain(5.0)
        await cancel_and_wait(self._creates)
        await self._supervisor.aclose()
        await self._lease.release()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def _load_workers(self) -> None:
        now = time.time()
        for key, data in await kv_items(self._kv_workers):
            try:
                info = decode_as(data, WorkerInfo)
            except msgspec.DecodeError:
                continue
            self._placement.heard(info)
            # A worker's age is judged from what this controller has seen: a fresh start gives it a full TTL.
            self._placement.seen[key] = now

    # --------------------------------------------------------------- leadership
    async def _lead(self) -> None:
        """Take over the duties done once: a fresh grace for everyone, then watch and reap."""
        now = time.time()
        for record in self._sessions.values():
            record.last_activity = max(record.last_activity, now) if record.info.status != "lost" else now
        for wid in self._placement.seen:
            self._placement.seen[wid] = now
        assert self._nc is not None
        for subjects in self._every_tenant:
            self._leader_subs.append(await self._nc.subscribe(subjects.actions(), cb=_guarded(self._on_action)))
            self._leader_subs.append(await self._nc.subscribe(subjects.statuses(), cb=_guarded(self._on_status)))
        self._supervisor.start("reaper", self._reap_forever)

    async def _follow(self) -> None:
        self._supervisor.stop("reaper")
        await unsubscribe_all(self._leader_subs)

    # -------------------------------------------------------------------- intake
    async def _enqueue(self, msg: Msg) -> None:
        try:
            self.tell(msg)
        except InboxFull as exc:
            await self._reply(msg, ErrorReply(code=codes.NO_CAPACITY, message=str(exc)))

    async def _admit(self, msg: Msg) -> None:
        """A create may wait a minute for room (a vscode for code-server to start): it runs as a
        task of its own, never in the inbox."""
        if len(self._creates) >= self._config.max_waiting_creates:
            return await self._reply(msg, ErrorReply(code=codes.NO_CAPACITY, message=(
                f"{len(self._creates)} slow requests (create, vscode) are already waiting; try again later")))
        task = asyncio.create_task(self._serve(msg, msg.subject.rsplit(".", 1)[-1]))
        self._creates.add(task)
        task.add_done_callback(self._creates.discard)

    def describe(self, msg: Msg) -> dict[str, Any]:
        return {"subject": msg.subject}

    async def handle(self, msg: Msg) -> None:
        await self._serve(msg, msg.subject.rsplit(".", 1)[-1])

    async def _serve(self, msg: Msg, verb: str) -> None:
        as_json = wants_json(msg.headers)
        tenant = self._subjects.tenant_of(msg.subject) or ""
        try:
            if tenant and not TENANT_NAME.fullmatch(tenant):
                reply: msgspec.Struct = ErrorReply(code=codes.INVALID_ARGUMENT, message=f"no tenant can be named {tenant!r}")
            else:
                reply = await self._dispatch(verb, msg.data, as_json, tenant)
        except msgspec.ValidationError as exc:
            code = codes.INVALID_SPEC if verb == "create" else codes.BAD_PAYLOAD
            reply = ErrorReply(code=code, message=f"invalid {verb} request: {exc}")
        except msgspec.DecodeError as exc:
            reply = ErrorReply(code=codes.BAD_PAYLOAD, message=f"undecodable {verb} request: {exc}")
        except Exception as exc:  # a bug must still answer the request, and the actor lives on
            log.exception("control_request_failed", verb=verb)
            reply = ErrorReply(code=codes.INTERNAL, message=f"controller failed on {verb}: {exc!r}")
        await self._reply(msg, reply)

    async def _dispatch(self, verb: str, data: bytes, as_json: bool, tenant: str = "") -> msgspec.Struct:
        """One control request; ``tenant`` is the requester's (from the subject it came on, which
        the broker lets only that tenant's users publish on): it sees only its own sessions."""
        if tenant and verb in ADMIN_VERBS:
            return ErrorReply(code=codes.NOT_PERMITTED, message=f"{verb} is for the deployment's operator, not a tenant")
        match verb:
            case "create":
                return await self._create(decode_as(data, SessionSpec, json=as_json), tenant)
            case "close":
                sid = decode_as(data, SessionRef, json=as_json).session_id
                return self._hidden(sid, tenant) or await self._close(sid)
            case "pause" | "resume":
                sid = decode_as(data, SessionRef, json=as_json).session_id
                return self._hidden(sid, tenant) or await self._freeze(sid, verb)
            case "expose" | "unexpose":
                ref = decode_as(data, PortRef, json=as_json)
                return self._hidden(ref.session_id, tenant) or await self._port(ref, verb)
            case "vscode":
                sid = decode_as(data, SessionRef, json=as_json).session_id
                return self._hidden(sid, tenant) or await self._vscode(sid)
            case "drain":
                return await self._drain(decode_as(data, WorkerRef, json=as_json))
            case "get":
                sid = decode_as(data, SessionRef, json=as_json).session_id
                return self._hidden(sid, tenant) or self._get(sid)
            case "list":
                decode_as(data, Empty, json=as_json)
                return SessionList(sessions=[r.info for r in self._sessions.values() if not tenant or r.info.tenant == tenant])
            case "workers":
                decode_as(data, Empty, json=as_json)
                return WorkerList(workers=list(self._placement.workers.values()))
            case _:
                return ErrorReply(code=codes.UNKNOWN_KIND, message=f"unknown control verb {verb!r}")

    def _hidden(self, session_id: str, tenant: str) -> ErrorReply | None:
        """Another tenant's session is, to a tenant, a session that does not exist (the same answer,
        word for word). The deployment's own clients (``tenant=""``) see every session."""
        record = self._sessions.get(session_id)
        if tenant and record is not None and record.info.tenant != tenant:
            return _unknown(session_id)
        return None

    async def _reply(self, msg: Msg, reply: msgspec.Struct) -> None:
        if isinstance(reply, ErrorReply):
            metrics.failures.labels("controller", reply.code).inc()
        if msg.reply:
            as_json = wants_json(msg.headers)
            await self._nc.publish(msg.reply, encode(reply, json=as_json), headers=headers_for(as_json))  # type: ignore[union-attr]

    # ----------------------------------------------------------------- verbs
    def _get(self, session_id: str) -> SessionInfo | ErrorReply:
        record = self._sessions.get(session_id)
        if record is None:
            return _unknown(session_id)
        return record.info

    async def _create(self, spec: SessionSpec, tenant: str = "") -> SessionInfo | ErrorReply:
        with live_secrets.holding(spec.secrets):  # this process's logs mask them while it holds them
            return await self._place_and_start(spec, tenant)

    async def _place_and_start(self, spec: SessionSpec, tenant: str = "") -> SessionInfo | ErrorReply:
        problem = spec_problem(spec)
        if problem:
            return ErrorReply(code=codes.INVALID_SPEC, message=problem)
        deadline = time.monotonic() + self._config.create_queue_timeout_s
        shunned: set[str] = set()
        while True:
            session_id = "s" + new_id()  # a fresh id per attempt: a slow first worker cannot collide
            worker = await self._placement.reserve_or_wait(spec, deadline, shunned)
            if isinstance(worker, ErrorReply):
                return worker
            reply = await self._start_on(worker.worker_id, session_id, spec, tenant)
            if isinstance(reply, SessionInfo):
                reply = msgspec.structs.replace(reply, tenant=tenant)
                break
            retry = reply.code in (codes.WORKER_FULL, codes.WORKER_DRAINING, codes.WORKER_UNAVAILABLE)
            if not retry or time.monotonic() >= deadline:
                return reply
            if reply.code == codes.WORKER_UNAVAILABLE:
                shunned.add(worker.worker_id)
                log.warning("session_create_replaced", worker_id=worker.worker_id, reason=reply.message)
            # our view of that worker was stale, or it went silent: place again
        # The registry never holds secrets (every controller and worker reads it); the worker keeps them.
        await self._table.put(SessionRecord(info=reply, spec=without_secrets(spec), last_activity=time.time()))
        return reply

    async def _start_on(self, wid: str, session_id: str, spec: SessionSpec, tenant: str = "") -> SessionInfo | ErrorReply:
        """Ask one worker to start the sandbox; releases the reservation ``reserve`` made.

        A worker that stops heartbeating meanwhile is not waited for: the create fails over fast
        (``worker_unavailable``) and the caller places it elsewhere."""
        log.info("session_placing", session_id=session_id, worker_id=wid)
        request = asyncio.ensure_future(self._nc.request(  # type: ignore[union-attr]
            self._subjects.worker(wid, "create"), encode(SandboxCreate(session_id=session_id, spec=spec, tenant=tenant)),
            timeout=self._config.create_timeout_s))
        lapse = asyncio.ensure_future(self._heartbeat_lapse(wid))
        reply: Any
        try:
            await asyncio.wait({request, lapse}, return_when=asyncio.FIRST_COMPLETED)
            if request.done():
                reply = decode_reply(request.result().data)
            else:
                reply = ErrorReply(code=codes.WORKER_UNAVAILABLE,
                                   message=f"worker {wid} stopped sending heartbeats while starting the sandbox")
                await self._abandon_start(wid, session_id)
        except (*_REPLY_ERRORS, msgspec.DecodeError) as exc:
            reply = ErrorReply(code=codes.WORKER_UNAVAILABLE, message=f"worker {wid} did not start the sandbox: {exc!r}")
        finally:
            await cancel_and_wait([request, lapse])
        if not isinstance(reply, (SessionInfo, ErrorReply)):
            reply = ErrorReply(code=codes.INTERNAL, message=f"worker {wid} answered create with {type(reply).__name__}")
        self._placement.release(wid, started=isinstance(reply, SessionInfo))
        return reply

    async def _heartbeat_lapse(self, wid: str) -> None:
        """Returns once worker ``wid`` has been silent for ``create_lapse_s``."""
        while True:
            seen = self._placement.seen.get(wid)
            if seen is None or time.time() - seen > self._config.create_lapse_s:
                return
            await asyncio.sleep(min(0.5, self._config.create_lapse_s / 4))

    async def _abandon_start(self, wid: str, session_id: str) -> None:
        """Tell a silent worker to drop the sandbox it may still be starting (if it ever hears)."""
        try:
            await self._nc.publish(self._subjects.worker(wid, "close"), encode(SessionRef(session_id=session_id)))  # type: ignore[union-attr]
        except nats.errors.Error:
            pass

    async def _close(self, session_id: str, *, reason: str | None = None) -> SessionInfo | ErrorReply:
        record = self._sessions.get(session_id)
        if record is None:
            return _unknown(session_id)
        info = msgspec.structs.replace(record.info, status="closed", reason=reason)
        if record.info.status != "lost":
            try:
                msg = await self._nc.request(  # type: ignore[union-attr]
                    self._subjects.worker(record.info.worker_id, "close"), encode(SessionRef(session_id=session_id)), timeout=30
                )
                answer = decode_reply(msg.data)
                if isinstance(answer, SessionInfo):
                    info = msgspec.structs.replace(answer, reason=reason, tenant=record.info.tenant)
            except (*_REPLY_ERRORS, msgspec.DecodeError) as exc:
                log.warning("session_close_unanswered", session_id=session_id, worker_id=record.info.worker_id, error=repr(exc))
                await self._publish_status(info)
        else:
            await self._publish_status(info)
        await self._table.delete(session_id)
        await self._placement.room_changed()
        log.info("session_closed", session_id=session_id, reason=reason)
        return info

    async def _drain(self, ref: WorkerRef) -> WorkerList | ErrorReply:
        """Stop (or resume) placing sessions on a worker; its running sessions carry on."""
        if ref.worker_id not in self._placement.workers:
            return ErrorReply(code=codes.INVALID_ARGUMENT, message=f"no live worker {ref.worker_id!r}")
        try:
            msg = await self._nc.request(  # type: ignore[union-attr]
                self._subjects.worker(ref.worker_id, "drain"), encode(ref), timeout=10)
            info = decode_as(msg.data, WorkerInfo)
        except (*_REPLY_ERRORS, msgspec.DecodeError) as exc:
            return ErrorReply(code=codes.WORKER_UNAVAILABLE, message=f"worker {ref.worker_id} did not answer: {exc!r}")
        self._placement.heard(info)
        await self._placement.room_changed()
        return WorkerList(workers=[info])

    async def _freeze(self, session_id: str, verb: str) -> SessionInfo | ErrorReply:
        """Pause (freeze every process of the sandbox) or resume it, through its worker."""
        record, reply = await self._ask_worker(session_id, verb, SessionRef(session_id=session_id))
        if record is not None and isinstance(reply, SessionInfo):
            record.info = msgspec.structs.replace(record.info, status=reply.status)
            record.last_activity = time.time()
            await self._table.put(record)
        return reply

    async def _port(self, ref: PortRef, verb: str) -> Any:
        """Expose or unexpose a port of the sandbox through its worker; the registry lists what is open."""
        record, reply = await self._ask_worker(ref.session_id, verb, ref)
        if record is not None and isinstance(reply, PortInfo):
            kept = [p for p in record.info.ports if p.port != reply.port or p.purpose != reply.purpose]
            await self._set_ports(record, kept + [reply] if verb == "expose" else kept)
        return reply

    async def _vscode(self, session_id: str) -> Any:
        """VS Code on the session's workdir, started by its worker. Its forward is listed in the
        session's ``ports`` with ``purpose="vscode"``, ``port=0`` (the sandbox port is the plugin's
        business) and a URL without the token (``get``/``list`` must not hand the token out)."""
        record, reply = await self._ask_worker(session_id, "vscode", SessionRef(session_id=session_id),
                                               timeout_s=VSCODE_TIMEOUT_S)
        if record is not None and isinstance(reply, VscodeInfo):
            forward = PortInfo(session_id=session_id, port=0, host=reply.host, host_port=reply.host_port,
                               url=f"http://{reply.host}:{reply.host_port}/", purpose="vscode")
            await self._set_ports(record, [p for p in record.info.ports if p.purpose != "vscode"] + [forward])
        return reply

    async def _set_ports(self, record: SessionRecord, ports: list[PortInfo]) -> None:
        record.info = msgspec.structs.replace(record.info, ports=ports)
        record.last_activity = time.time()
        await self._table.put(record)

    async def _ask_worker(self, session_id: str, verb: str, request: msgspec.Struct, *,
                          timeout_s: float = 30.0) -> tuple[SessionRecord | None, Any]:
        """Send a session's request to its worker: (the record, the worker's decoded answer), or
        (None, the error) when the session is unknown or lost, or the worker does not answer."""
        record = self._sessions.get(session_id)
        if record is None:
            return None, _unknown(session_id)
        if record.info.status == "lost":
            return None, ErrorReply(code=codes.SANDBOX_LOST, message=f"session {session_id} is lost: {record.info.reason}")
        try:
            msg = await self._nc.request(  # type: ignore[union-attr]
                self._subjects.worker(record.info.worker_id, verb), encode(request), timeout=timeout_s)
            return record, decode_reply(msg.data)
        except (*_REPLY_ERRORS, msgspec.DecodeError) as exc:
            return None, ErrorReply(code=codes.WORKER_UNAVAILABLE,
                                    message=f"worker {record.info.worker_id} did not {verb}: {exc!r}")

    async def _publish_status(self, info: SessionInfo) -> None:
        await self._nc.publish(self._of(info).status(info.session_id), encode(info))  # type: ignore[union-attr]

    # ------------------------------------------------- the leader: data-path watch
    async def _on_action(self, msg: Msg) -> None:
        parsed = self._subjects.parse_session_subject(msg.subject)
        if parsed is None:
            return
        session_id = parsed[0]
        tenant = self._subjects.tenant_of(msg.subject) or ""
        subjects = self._subjects.for_tenant(tenant)
        record = self._sessions.get(session_id)
        if record is not None and record.info.tenant == tenant:  # another tenant's id is no session of this one
            if record.info.status != "lost":  # a lost session's actions wait in the stream for recovery
                record.last_activity = time.time()
            return
        grave = self._graves.get(session_id)
        if grave is not None and grave[0] == tenant:
            await self._answer_lost(subjects, session_id, msg.data, wants_json(msg.headers), codes.SANDBOX_LOST,
                                    f"session {session_id} is lost: {grave[1]}")
        else:
            await self._answer_lost(subjects, session_id, msg.data, wants_json(msg.headers), codes.UNKNOWN_SESSION,
                                    _unknown(session_id).message)

    def _bury(self, info: SessionInfo, reason: str) -> None:
        """Remember why a session ended by loss, so late actions get `sandbox_lost`, not `unknown_session`."""
        self._graves[info.session_id] = (info.tenant, reason)
        if len(self._graves) > 10_000:
            self._graves.popitem(last=False)

    async def _answer_lost(self, subjects: Subjects, session_id: str, data: bytes, as_json: bool, code: str,
                           message: str) -> None:
        """Answer one action that no worker will ever execute."""
        try:
            action_id: str | None = decode_action(data, json=as_json).id
        except ActionDecodeError as exc:
            action_id = exc.action_id
        error = Error(id=new_id(), cause=action_id, session_id=session_id, code=code, message=message)
        await self._nc.publish(  # type: ignore[union-attr]
            subjects.obs(session_id, "error"), encode(error, json=as_json), headers=final_headers(error.id, as_json)
        )

    async def _abandon(self, record: SessionRecord) -> None:
        """A lost session that did not recover: answer every action still pending, then close it.

        The session's consumer remembers what its dead worker acked; every action after its ack
        floor that the stream shows no final observation for gets a `sandbox_lost` error, so no
        action is left without an answer, and none gets two."""
        sid = record.info.session_id
        reason = f"{record.info.reason}; not recovered within {self._config.lost_grace_s:.0f} s"
        js = self._nc.jetstream()  # type: ignore[union-attr]
        stream = stream_name(self._subjects)
        consumer = f"session_{sid}"
        try:
            info = await js.consumer_info(stream, consumer)
            start = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            await js.delete_consumer(stream, consumer)
        except nats.js.errors.NotFoundError:
            start = 1
        answered = await answer_unanswered(self._nc, self._of(record.info), stream, sid, since=start,  # type: ignore[arg-type]
                                           code=codes.SANDBOX_LOST, reason=f"session {sid} is lost: {reason}")
        self._bury(record.info, reason)
        await self._table.delete(sid)
        await self._publish_status(msgspec.structs.replace(record.info, status="closed", reason=reason))
        log.warning("session_abandoned", session_id=sid, pending_answered=answered, reason=reason)

    async def _on_status(self, msg: Msg) -> None:
        """Workers report sandboxes that died or sessions they closed on their own."""
        try:
            info = decode_reply(msg.data, json=wants_json(msg.headers))
        except msgspec.DecodeError:
            return
        if not isinstance(info, SessionInfo):
            return
        record = self._sessions.get(info.session_id)
        if record is None or record.info.tenant != (self._subjects.tenant_of(msg.subject) or ""):
            return  # no session, or a status on another tenant's subjects than the session's
        if info.status == record.info.status == "ready" and info.plugins != record.info.plugins:
            record.info = msgspec.structs.replace(record.info, plugins=info.plugins)  # a plugin started or failed
            await self._table.put(record)
            return
        if record.info.status == info.status:
            return
        if info.status == "closed":  # closed by its worker (e.g. worker shutdown), not through ctl.close
            await self._table.delete(info.session_id)
        elif info.status == "lost":  # its worker saw the sandbox die and answered what it held
            self._bury(record.info, info.reason or "the sandbox died")
            await self._table.delete(info.session_id)
        elif info.status == "recovered":  # a restarted worker re-adopted the sandbox
            record.info = msgspec.structs.replace(record.info, status="ready", worker_id=info.worker_id, reason=None,
                                                  ports=info.ports)  # the forwards it re-opened
            record.last_activity = time.time()
            await self._table.put(record)

    # ------------------------------------------------------------ heartbeats
    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            info = decode_as(msg.data, WorkerInfo)
        except msgspec.DecodeError:
            log.warning("heartbeat_undecodable", subject=msg.subject)
            return
        self._placement.heard(info)
        now = time.time()
        for sid in info.active:  # a running command or streaming output is activity, not idleness
            record = self._sessions.get(sid)
            if record is not None and record.info.worker_id == info.worker_id:
                record.last_activity = now
        if self._placement.waiting:
            await self._placement.room_changed()

    # ------------------------------------------------------- the leader: reaper
    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.reap_interval_s)
            await self.reap_once()

    async def reap_once(self) -> None:
        now = time.time()
        self._export_gauges()
        for wid, seen in list(self._placement.seen.items()):
            if now - seen > self._config.heartbeat_ttl_s:
                await self._worker_lost(wid, now - seen)
        for sid, record in list(self._sessions.items()):
            if record.info.status == "lost" and now - record.last_activity > self._config.lost_grace_s:
                await self._abandon(record)
                continue
            idle = record.spec.idle_timeout_s or self._config.default_idle_timeout_s
            if idle and record.info.status == "ready" and now - record.last_activity > idle:
                log.info("session_idle_reaped", session_id=sid, idle_s=round(now - record.last_activity, 1))
                await self._close(sid, reason=f"idle for more than {idle} s")

    def _export_gauges(self) -> None:
        counts: dict[str, int] = {state: 0 for state in ("ready", "paused", "lost")}
        for record in self._sessions.values():
            counts[record.info.status] = counts.get(record.info.status, 0) + 1
        for state, n in counts.items():
            metrics.sessions.labels("controller", state).set(n)
        metrics.workers.set(len(self._placement.workers))

    async def _worker_lost(self, wid: str, silent_s: float) -> None:
        self._placement.forget(wid)
        await kv_delete(self._kv_workers, wid)
        lost = [r for r in self._sessions.values() if r.info.worker_id == wid and r.info.status != "lost"]
        log.warning("worker_lost", worker_id=wid, silent_s=round(silent_s, 1), sessions=len(lost))
        for record in lost:
            record.info = msgspec.structs.replace(
                record.info, status="lost", reason=f"worker {wid} stopped sending heartbeats ({silent_s:.1f} s)"
            )
            record.last_activity = time.time()  # the grace period for recovery starts now
            await self._table.put(record)
            await self._publish_status(record.info)


def _unknown(session_id: str) -> ErrorReply:
    return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"no session {session_id!r} (never created, or closed)")
