"""The controller: placement, the session registry, idle reaping and worker liveness.

It serves ``corral.ctl.<verb>``; the session registry and worker heartbeats live in JetStream
KV so a restarted controller finds them again. It also listens to every session's actions
(cheaply: subject only) to answer actions for unknown sessions and to track idleness. The data
path itself (action -> worker -> observation) never passes through the controller.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import random
import time
from typing import Any, Awaitable, Callable

import msgspec
import nats
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
import nats.js.errors
import structlog

from protocol import (
    Empty,
    Error,
    ErrorReply,
    SandboxCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SessionSpec,
    Subjects,
    WorkerInfo,
    WorkerList,
    WorkerRef,
    codes,
    connect_nats,
    decode_as,
    decode_reply,
    encode,
    headers_for,
    new_id,
    spec_problem,
    wants_json,
)
from protocol._codec import ActionDecodeError, decode_action

from . import metrics
from ._answers import answer_unanswered, final_headers
from ._broker import StreamConfigOptions, ensure_stream, sessions_bucket, stream_name, workers_bucket
from ._kernel import Actor, InboxFull, Supervisor, cancel_and_wait
from ._registry import SessionRecord, kv_delete, kv_items, record_decoder

log = structlog.get_logger()

_REPLY_ERRORS = (nats.errors.TimeoutError, nats.errors.NoRespondersError)


class ControllerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "corral"
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
    placement_choices: int = 3
    """Best of K: how many workers with room are compared for each placement."""
    stream: StreamConfigOptions = StreamConfigOptions()


_worker_codec = msgspec.msgpack.Decoder(WorkerInfo)


def _guarded(callback: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that no message can crash (it is logged; the next one is served)."""
    async def cb(msg: Msg) -> None:
        try:
            await callback(msg)
        except Exception:
            log.exception("controller_message_failed", subject=msg.subject)
    return cb


class Controller(Actor[Msg]):
    """Control requests arrive in the inbox; creates run concurrently, each one a message."""

    name = "controller"

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__(inbox_size=4096, concurrency=32)
        self._config = config
        self._subjects = Subjects(config.prefix)
        self._nc: Nats | None = None
        self._sessions: dict[str, SessionRecord] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._worker_seen: dict[str, float] = {}
        self._supervisor = Supervisor("controller")
        self._queue: list[object] = []
        self._graves: OrderedDict[str, str] = OrderedDict()
        self._capacity = asyncio.Condition()
        self._subs: list[Any] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self, nc: Nats | None = None) -> None:
        self._nc = nc or await connect_nats(self._config.nats_url, name="corral-controller")
        js = self._nc.jetstream()
        await ensure_stream(js, self._subjects, self._config.stream)
        self._kv_sessions = await sessions_bucket(js, self._subjects)
        self._kv_workers = await workers_bucket(js, self._subjects)
        await self._load_state()
        group = "corral-controller"
        for verb in ("create", "close", "get", "list", "workers", "pause", "resume", "drain"):
            self._subs.append(await self._nc.subscribe(self._subjects.ctl(verb), queue=group, cb=self._enqueue))
        self._subs.append(await self._nc.subscribe(self._subjects.heartbeats, cb=_guarded(self._on_heartbeat)))
        self._subs.append(await self._nc.subscribe(self._subjects.actions(), queue=group, cb=_guarded(self._on_action)))
        self._subs.append(await self._nc.subscribe(self._subjects.statuses(), queue=group, cb=_guarded(self._on_status)))
        self._supervisor.start("inbox", self.run)
        self._supervisor.start("reaper", self._reap_forever)
        await self._nc.flush()
        log.info("controller_started", sessions=len(self._sessions), workers=len(self._workers))

    async def aclose(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        await self.drain(5.0)
        await self._supervisor.aclose()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def _load_state(self) -> None:
        for key, data in await kv_items(self._kv_sessions):
            record = record_decoder.decode(data)
            record.last_activity = time.time()
            self._sessions[key] = record
        now = time.time()
        for key, data in await kv_items(self._kv_workers):
            info = _worker_codec.decode(data)
            self._workers[key] = info
            # A worker's age is judged from what this controller has seen: a fresh start gives it a full TTL.
            self._worker_seen[key] = now

    # -------------------------------------------------------------------- inbox
    async def _enqueue(self, msg: Msg) -> None:
        try:
            self.tell(msg)
        except InboxFull as exc:
            await self._reply(msg, ErrorReply(code=codes.NO_CAPACITY, message=str(exc)))

    def describe(self, msg: Msg) -> dict[str, Any]:
        return {"subject": msg.subject}

    async def handle(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        as_json = wants_json(msg.headers)
        try:
            match verb:
                case "create":
                    reply = await self._create(decode_as(msg.data, SessionSpec, json=as_json))
                case "close":
                    reply = await self._close(decode_as(msg.data, SessionRef, json=as_json).session_id)
                case "pause" | "resume":
                    reply = await self._freeze(decode_as(msg.data, SessionRef, json=as_json).session_id, verb)
                case "drain":
                    reply = await self._drain(decode_as(msg.data, WorkerRef, json=as_json))
                case "get":
                    reply = self._get(decode_as(msg.data, SessionRef, json=as_json).session_id)
                case "list":
                    decode_as(msg.data, Empty, json=as_json)
                    reply = SessionList(sessions=[r.info for r in self._sessions.values()])
                case "workers":
                    decode_as(msg.data, Empty, json=as_json)
                    reply = WorkerList(workers=list(self._workers.values()))
                case _:
                    reply = ErrorReply(code=codes.UNKNOWN_KIND, message=f"unknown control verb {verb!r}")
        except msgspec.ValidationError as exc:
            code = codes.INVALID_SPEC if verb == "create" else codes.BAD_PAYLOAD
            reply = ErrorReply(code=code, message=f"invalid {verb} request: {exc}")
        except msgspec.DecodeError as exc:
            reply = ErrorReply(code=codes.BAD_PAYLOAD, message=f"undecodable {verb} request: {exc}")
        except Exception as exc:  # a bug must still answer the request, and the actor lives on
            log.exception("control_request_failed", verb=verb)
            reply = ErrorReply(code=codes.INTERNAL, message=f"controller failed on {verb}: {exc!r}")
        await self._reply(msg, reply)

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
            return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"no session {session_id!r} (never created, or closed)")
        return record.info

    def _place(self, spec: SessionSpec, shunned: set[str] = frozenset()) -> WorkerInfo | ErrorReply | None:  # type: ignore[assignment]
        """The best worker for ``spec``; an ErrorReply when none could ever take it; None when all are full.

        Among workers with room, prefer one that has a warm sandbox and the image, then the least
        loaded; with many workers, only a random few are compared (best of K), which keeps
        placement O(1) and spreads a burst of creates instead of piling them on one worker.
        """
        wanted = spec.backend if spec.backend not in (None, "auto") else None
        able = [w for w in self._workers.values()
                if not w.draining and w.worker_id not in shunned and (wanted is None or w.backend == wanted)]
        if not able:
            if not self._workers:
                return ErrorReply(code=codes.NO_CAPACITY, message="no worker is registered (start one with `corral worker`)")
            if wanted and not any(w.backend == wanted for w in self._workers.values()):
                have = sorted({w.backend for w in self._workers.values()})
                return ErrorReply(code=codes.NO_CAPACITY, message=f"no worker runs backend {wanted!r} (available: {', '.join(have)})")
            if shunned:
                return ErrorReply(code=codes.WORKER_UNAVAILABLE, message=(
                    f"worker {', '.join(sorted(shunned))} went silent while starting this session, and no other "
                    "worker can run it"))
            return ErrorReply(code=codes.NO_CAPACITY, message="every worker that could run this session is draining")
        candidates = [w for w in able if w.running + w.starting < w.capacity]
        if not candidates:
            return None
        if len(candidates) > self._config.placement_choices:
            candidates = random.sample(candidates, self._config.placement_choices)

        def score(w: WorkerInfo) -> tuple[bool, bool, float, int]:
            has_image = spec.image is None or spec.image in w.images
            return (not w.warm, not has_image, (w.running + w.starting) / max(w.capacity, 1), w.running)

        return min(candidates, key=score)

    async def _place_or_wait(self, spec: SessionSpec, deadline: float, shunned: set[str]) -> WorkerInfo | ErrorReply:
        """Place now, or queue first come, first served until a worker has room (bounded wait)."""
        ticket = object()
        self._queue.append(ticket)
        try:
            async with self._capacity:
                while True:
                    if self._queue[0] is ticket:
                        placed = self._reserve(spec, shunned)
                        if placed is not None:
                            return placed
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return ErrorReply(code=codes.NO_CAPACITY, message=(
                            f"every worker is at capacity; waited {self._config.create_queue_timeout_s:.0f} s in a queue "
                            f"of {len(self._queue)} for a free slot"))
                    try:
                        await asyncio.wait_for(self._capacity.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self._queue.remove(ticket)
            await self._capacity_changed()

    async def _capacity_changed(self) -> None:
        async with self._capacity:
            self._capacity.notify_all()

    def _reserve(self, spec: SessionSpec, shunned: set[str]) -> WorkerInfo | ErrorReply | None:
        """Place, and count the start against the worker at once (its next heartbeat may be seconds away)."""
        placed = self._place(spec, shunned)
        if isinstance(placed, WorkerInfo):
            placed = msgspec.structs.replace(placed, starting=placed.starting + 1, warm=max(placed.warm - 1, 0))
            self._workers[placed.worker_id] = placed
        return placed

    async def _start_on(self, wid: str, session_id: str, spec: SessionSpec) -> SessionInfo | ErrorReply:
        """Ask one worker to start the sandbox; releases the reservation made by _reserve.

        A worker that stops heartbeating meanwhile is not waited for: the create fails over fast
        (``worker_unavailable``) and the caller places it elsewhere."""
        log.info("session_placing", session_id=session_id, worker_id=wid)
        request = asyncio.ensure_future(self._nc.request(  # type: ignore[union-attr]
            self._subjects.worker(wid, "create"), encode(SandboxCreate(session_id=session_id, spec=spec)),
            timeout=self._config.create_timeout_s))
        lapse = asyncio.ensure_future(self._heartbeat_lapse(wid))
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
            current = self._workers.get(wid)
            if current is not None:
                self._workers[wid] = msgspec.structs.replace(current, starting=max(current.starting - 1, 0))
        if not isinstance(reply, (SessionInfo, ErrorReply)):
            reply = ErrorReply(code=codes.INTERNAL, message=f"worker {wid} answered create with {type(reply).__name__}")
        return reply

    async def _heartbeat_lapse(self, wid: str) -> None:
        """Returns once worker ``wid`` has been silent for ``create_lapse_s``."""
        while True:
            seen = self._worker_seen.get(wid)
            if seen is None or time.time() - seen > self._config.create_lapse_s:
                return
            await asyncio.sleep(min(0.5, self._config.create_lapse_s / 4))

    async def _abandon_start(self, wid: str, session_id: str) -> None:
        """Tell a silent worker to drop the sandbox it may still be starting (if it ever hears)."""
        try:
            await self._nc.publish(self._subjects.worker(wid, "close"), encode(SessionRef(session_id=session_id)))  # type: ignore[union-attr]
        except nats.errors.Error:
            pass

    async def _create(self, spec: SessionSpec) -> SessionInfo | ErrorReply:
        problem = spec_problem(spec)
        if problem:
            return ErrorReply(code=codes.INVALID_SPEC, message=problem)
        deadline = time.monotonic() + self._config.create_queue_timeout_s
        shunned: set[str] = set()
        while True:
            session_id = "s" + new_id()  # a fresh id per attempt: a slow first worker cannot collide
            worker = self._reserve(spec, shunned) if not self._queue else None
            if worker is None:
                worker = await self._place_or_wait(spec, deadline, shunned)
            if isinstance(worker, ErrorReply):
                return worker
            reply = await self._start_on(worker.worker_id, session_id, spec)
            retry = isinstance(reply, ErrorReply) and reply.code in (codes.NO_CAPACITY, codes.WORKER_UNAVAILABLE)
            if retry and time.monotonic() < deadline:
                if reply.code == codes.WORKER_UNAVAILABLE:  # type: ignore[union-attr]
                    shunned.add(worker.worker_id)
                    log.warning("session_create_replaced", worker_id=worker.worker_id, reason=reply.message)  # type: ignore[union-attr]
                continue  # our view of that worker was stale, or it went silent: place again
            break
        if not isinstance(reply, SessionInfo):
            return reply
        wid = worker.worker_id
        current = self._workers.get(wid)
        if current is not None:
            self._workers[wid] = msgspec.structs.replace(current, running=current.running + 1)
        record = SessionRecord(info=reply, spec=spec, last_activity=time.time())
        self._sessions[session_id] = record
        await self._kv_sessions.put(session_id, encode(record))
        return reply

    async def _close(self, session_id: str, *, reason: str | None = None) -> SessionInfo | ErrorReply:
        record = self._sessions.pop(session_id, None)
        if record is None:
            return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"no session {session_id!r} (never created, or closed)")
        info = msgspec.structs.replace(record.info, status="closed", reason=reason)
        if record.info.status != "lost":
            try:
                msg = await self._nc.request(  # type: ignore[union-attr]
                    self._subjects.worker(record.info.worker_id, "close"), encode(SessionRef(session_id=session_id)), timeout=30
                )
                answer = decode_reply(msg.data)
                if isinstance(answer, SessionInfo):
                    info = msgspec.structs.replace(answer, reason=reason)
            except _REPLY_ERRORS as exc:
                log.warning("session_close_unanswered", session_id=session_id, worker_id=record.info.worker_id, error=repr(exc))
                await self._publish_status(info)
        else:
            await self._publish_status(info)
        await kv_delete(self._kv_sessions, session_id)
        log.info("session_closed", session_id=session_id, reason=reason)
        return info

    async def _drain(self, ref: WorkerRef) -> WorkerList | ErrorReply:
        """Stop (or resume) placing sessions on a worker; its running sessions carry on."""
        if ref.worker_id not in self._workers:
            return ErrorReply(code=codes.INVALID_ARGUMENT, message=f"no live worker {ref.worker_id!r}")
        try:
            msg = await self._nc.request(  # type: ignore[union-attr]
                self._subjects.worker(ref.worker_id, "drain"), encode(ref), timeout=10)
            info = msgspec.msgpack.decode(msg.data, type=WorkerInfo)
        except (*_REPLY_ERRORS, msgspec.DecodeError) as exc:
            return ErrorReply(code=codes.WORKER_UNAVAILABLE, message=f"worker {ref.worker_id} did not answer: {exc!r}")
        self._workers[ref.worker_id] = info
        await self._capacity_changed()
        return WorkerList(workers=[info])

    async def _freeze(self, session_id: str, verb: str) -> SessionInfo | ErrorReply:
        """Pause (freeze every process of the sandbox) or resume it, through its worker."""
        record = self._sessions.get(session_id)
        if record is None:
            return ErrorReply(code=codes.UNKNOWN_SESSION, message=f"no session {session_id!r} (never created, or closed)")
        if record.info.status == "lost":
            return ErrorReply(code=codes.SANDBOX_LOST, message=f"session {session_id} is lost: {record.info.reason}")
        try:
            msg = await self._nc.request(  # type: ignore[union-attr]
                self._subjects.worker(record.info.worker_id, verb), encode(SessionRef(session_id=session_id)), timeout=30
            )
            reply = decode_reply(msg.data)
        except _REPLY_ERRORS as exc:
            return ErrorReply(code=codes.WORKER_UNAVAILABLE, message=f"worker {record.info.worker_id} did not {verb}: {exc!r}")
        if isinstance(reply, SessionInfo):
            record.info = msgspec.structs.replace(record.info, status=reply.status)
            record.last_activity = time.time()
            await self._kv_sessions.put(session_id, encode(record))
        return reply

    async def _publish_status(self, info: SessionInfo) -> None:
        await self._nc.publish(self._subjects.status(info.session_id), encode(info))  # type: ignore[union-attr]

    # --------------------------------------------------------- data-path watch
    async def _on_action(self, msg: Msg) -> None:
        parsed = self._subjects.parse_session_subject(msg.subject)
        if parsed is None:
            return
        session_id = parsed[0]
        record = self._sessions.get(session_id)
        if record is not None:
            if record.info.status != "lost":  # a lost session's actions wait in the stream for recovery
                record.last_activity = time.time()
            return
        why = self._graves.get(session_id)
        if why is not None:
            await self._answer_lost(session_id, msg.data, wants_json(msg.headers), codes.SANDBOX_LOST,
                                    f"session {session_id} is lost: {why}")
        else:
            await self._answer_lost(session_id, msg.data, wants_json(msg.headers), codes.UNKNOWN_SESSION,
                                    f"no session {session_id!r} (never created, or closed)")

    def _bury(self, session_id: str, reason: str) -> None:
        """Remember why a session ended by loss, so late actions get `sandbox_lost`, not `unknown_session`."""
        self._graves[session_id] = reason
        if len(self._graves) > 10_000:
            self._graves.popitem(last=False)

    async def _answer_lost(self, session_id: str, data: bytes, as_json: bool, code: str, message: str) -> None:
        """Answer one action that no worker will ever execute."""
        try:
            action_id: str | None = decode_action(data, json=as_json).id
        except ActionDecodeError as exc:
            action_id = exc.action_id
        error = Error(id=new_id(), cause=action_id, session_id=session_id, code=code, message=message)
        await self._nc.publish(  # type: ignore[union-attr]
            self._subjects.obs(session_id, "error"), encode(error, json=as_json), headers=final_headers(error.id, as_json)
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
        answered = await answer_unanswered(self._nc, self._subjects, stream, sid, since=start,  # type: ignore[arg-type]
                                           code=codes.SANDBOX_LOST, reason=f"session {sid} is lost: {reason}")
        self._sessions.pop(sid, None)
        self._bury(sid, reason)
        await kv_delete(self._kv_sessions, sid)
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
        if record is None or record.info.status == info.status:
            return
        if info.status == "closed":  # closed by its worker (e.g. worker shutdown), not through ctl.close
            self._sessions.pop(info.session_id, None)
            await kv_delete(self._kv_sessions, info.session_id)
        elif info.status == "lost":  # its worker saw the sandbox die and answered what it held
            self._sessions.pop(info.session_id, None)
            self._bury(info.session_id, info.reason or "the sandbox died")
            await kv_delete(self._kv_sessions, info.session_id)
        elif info.status == "recovered":  # a restarted worker re-adopted the sandbox
            record.info = msgspec.structs.replace(record.info, status="ready", worker_id=info.worker_id, reason=None)
            record.last_activity = time.time()
            await self._kv_sessions.put(info.session_id, encode(record))

    # ------------------------------------------------------------ heartbeats
    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            info = decode_as(msg.data, WorkerInfo)
        except msgspec.DecodeError:
            log.warning("heartbeat_undecodable", subject=msg.subject)
            return
        now = time.time()
        self._workers[info.worker_id] = info
        self._worker_seen[info.worker_id] = now
        for sid in info.active:  # a running command or streaming output is activity, not idleness
            record = self._sessions.get(sid)
            if record is not None and record.info.worker_id == info.worker_id:
                record.last_activity = now
        if self._queue:
            await self._capacity_changed()

    # --------------------------------------------------------------- reaper
    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.reap_interval_s)
            await self.reap_once()

    async def reap_once(self) -> None:
        now = time.time()
        self._export_gauges()
        for wid, seen in list(self._worker_seen.items()):
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
        metrics.workers.set(len(self._workers))

    async def _worker_lost(self, wid: str, silent_s: float) -> None:
        self._worker_seen.pop(wid, None)
        self._workers.pop(wid, None)
        await kv_delete(self._kv_workers, wid)
        lost = [r for r in self._sessions.values() if r.info.worker_id == wid and r.info.status != "lost"]
        log.warning("worker_lost", worker_id=wid, silent_s=round(silent_s, 1), sessions=len(lost))
        for record in lost:
            record.info = msgspec.structs.replace(
                record.info, status="lost", reason=f"worker {wid} stopped sending heartbeats ({silent_s:.1f} s)"
            )
            record.last_activity = time.time()  # the grace period for recovery starts now
            await self._kv_sessions.put(record.info.session_id, encode(record))
            await self._publish_status(record.info)
