"""One session on a worker: the path of every action, from its durable consumer to its answer.

    consumer -> intake (decode, repeat?) -> lane (by handler) -> gates -> handler -> outbox -> ack

Actions arrive in publish order from a durable JetStream consumer. Intake decodes each and
recognises what was answered already (``_book``). The handler that declared the action's kind
(``_handlers``) names its lane: one action at a time per lane, so order holds within a shell and
a long cell never blocks bash. In its lane the action passes the gates (``_gates``), which may
hold it for a ``confirm`` (``confirmation_required``) or refuse it (``rejected``); ``confirm``
and interrupt keys skip the lanes and the gates. Every action message
gets exactly one final answer, published through the stream (``_outbox``) before the message is
acked: a worker that dies mid-action leaves it in the stream, and one that takes over reads from
the stream what was answered. Closing a session answers everything it holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Literal, TypeVar

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
import nats.js.errors
import structlog

from actors import (
    Actor,
    InboxFull,
    answer_unanswered,
    answered_in_stream,
    cancel_and_wait,
    final_headers,
    metrics,
    while_api_away,
)
from actors.secrets import Masker, StreamMasker, live_secrets
from executor.client import ExecutorClient, ExecutorUnavailable
from protocol import (
    ActionDecodeError,
    AnyAction,
    AnyObservation,
    CmdChunk,
    CmdOutput,
    CmdRun,
    Confirm,
    ConfirmationRequired,
    ConfirmResult,
    Error,
    PluginStatus,
    Rejected,
    SessionInfo,
    SessionSpec,
    Subjects,
    codes,
    decode_action,
    encode,
    headers_for,
    new_id,
    unsubscribe_all,
    valid_id,
    wants_json,
)

from ..backends import SandboxHandle
from ._book import AnswerBook
from ._gates import Deny, GateChain, Hold, summary_of
from ._handlers import DEFAULT_HANDLERS, DeathReason, Handler, SandboxDied, SessionContext, route_table
from ._outbox import Outbox, Outgoing

log = structlog.get_logger()

PAYLOAD_HEADROOM = 4096
"""Bytes kept free under the broker's max payload for headers and protocol framing."""
OUT_OF_BAND_KEYS = frozenset({"C-c", "C-d", "C-z", "C-\\"})
"""``is_input`` keys that bypass their shell's queue (an interrupt must not wait behind what it interrupts)."""
CLOSE_DRAIN_S = 10.0
ObsT = TypeVar("ObsT", bound=msgspec.Struct)


class RunnerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ack_wait_s: float = 30.0
    chunk_ttl_s: float = 3600.0
    """Streamed chunks expire from the stream after this long (the final observation stays)."""
    action_output_quota_bytes: int = 16 * 2**20
    """Streamed output one action may put on the broker; past it, its chunks are dropped (the
    command runs on, its full output stays in the sandbox, the final answer says so)."""
    session_output_quota_bytes: int = 512 * 2**20
    """Streamed output of the whole session; past it, no more chunks are published for it."""
    answer_cache_bytes: int = 2 * 2**20
    handlers: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_HANDLERS))
    """Handler factories (registry ``corral.handlers``) that serve this worker's sessions."""
    gates: list[str] = []
    """Gates (registry ``corral.gates``) every action passes, in order. None here by default; a
    worker puts its ``security`` gate first unless its ``SecurityConfig`` disables it."""


class _Job(msgspec.Struct, kw_only=True):
    action: AnyAction
    msg: Msg
    json: bool
    seq: int | None
    repeats: list[Msg] = []
    """Other messages with the same action id that arrived while it ran: they get its answer."""
    repeat_json: list[bool] = []
    answered: bool = False
    running: bool = False
    """Past its gates and executing (not queued behind another, not held for a confirm)."""
    streamed: int = 0
    dropped: int = 0
    arrived: float = 0.0
    stream: StreamMasker | None = None
    """The masking of its streamed output, in a session with secrets (created by its first chunk)."""


class _Lane(Actor["tuple[_Job, Handler]"]):
    """Executes one session's actions for one shell, one at a time, in order."""

    def __init__(self, runner: SessionRunner, lane: str) -> None:
        super().__init__(inbox_size=10_000)
        self.name = f"lane:{lane}"
        self._runner = runner

    def describe(self, message: tuple[_Job, Handler]) -> dict[str, Any]:
        action = message[0].action
        return {"session_id": self._runner.session_id, "action_id": action.id, "kind": action.__struct_config__.tag}

    async def handle(self, message: tuple[_Job, Handler]) -> None:
        await self._runner.execute(*message)


class SessionRunner:
    """Serves one session's actions on this worker until closed."""

    def __init__(self, nc: Nats, subjects: Subjects, stream: str, handle: SandboxHandle, *,
                 spec: SessionSpec = SessionSpec(), client: ExecutorClient | None = None,
                 config: RunnerConfig = RunnerConfig(), on_dead: Callable[[str, str], None] | None = None,
                 death_reason: DeathReason | None = None, services: dict[str, Any] | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream
        self.handle = handle
        self.session_id = handle.session_id
        self._secrets = {**handle.secrets, **spec.secrets}
        """The session's secrets: from the spec at create, from the handle file after a worker restart."""
        self._masker = Masker.of(self._secrets)
        """None without secrets: then nothing is masked and publishing costs what it always did."""
        self._ctx = SessionContext(session_id=handle.session_id, spec=spec, handle=handle, death_reason=death_reason,
                                   masker=self._masker,
                                   client=client or ExecutorClient(key=handle.key, socket_path=handle.socket_path,
                                                                   host=handle.host, port=handle.port),
                                   report_plugins=self._report_plugins, services=services or {})
        self._info: SessionInfo | None = None
        """The last status this runner published, the base of plugin-state updates."""
        self._config = config
        self._on_dead = on_dead
        self._routes: dict[str, Handler] = {}
        self._gates = GateChain([])
        self._held: dict[str, asyncio.Future[Confirm]] = {}
        """Actions a gate holds, by id: the future the ``confirm`` naming it resolves."""
        self._book = AnswerBook(self._js, stream, cache_bytes=config.answer_cache_bytes)
        self._outbox = Outbox(nc, self._confirmed)
        self._jobs: dict[str, _Job] = {}
        """Every action this runner holds and has not answered: queued in a lane or running."""
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []
        self._closed = False
        self._dead: str | None = None
        self._close_code, self._close_reason = codes.SESSION_CLOSED, "the session was closed"
        self._streamed = 0
        self.last_activity = time.time()

    @property
    def client(self) -> ExecutorClient:
        """The channel to this session's executor (port forwards open their tunnels through it)."""
        return self._ctx.client

    @property
    def spec(self) -> SessionSpec:
        return self._ctx.spec

    @property
    def tenant(self) -> str:
        """The session's tenant ("" for the deployment's own): its subjects are that tenant's."""
        return self._subjects.tenant

    @property
    def consumer_name(self) -> str:
        return f"session_{self.session_id}"

    def busy(self, since: float) -> bool:
        """Is the session doing something: an action held, or output streamed since ``since``?"""
        return bool(self._jobs) or self.last_activity >= since

    def statistics(self) -> dict[str, int]:
        return {"held": len(self._jobs), "unconfirmed": self._outbox.pending, "streamed_bytes": self._streamed,
                **self._book.statistics()}

    async def start(self, *, recover: bool = False) -> None:
        """Subscribe the session's actions. With ``recover`` (a restarted worker adopting the
        sandbox), every action not yet acked is delivered again at once instead of after the
        ack wait; what the stream shows answered is recognised and not answered again."""
        live_secrets.add(self.session_id, self._secrets)  # this process's log lines mask them from now on
        self._routes = route_table(self._config.handlers, self._ctx)
        self._gates = GateChain.build(self._config.gates, self._ctx)
        for handler in {id(h): h for h in self._routes.values()}.values():
            await handler.open()
        self._spawn(self._outbox.run(), "outbox")
        self._spawn(self._keep_acking(), "keepalive")
        start_seq = 0
        if recover:
            start_seq = await self._unacked_from()
            horizon = (await self._js.stream_info(self._stream)).state.last_seq
            answered = await answered_in_stream(self._nc, self._subjects, self._stream, self.session_id, since=start_seq)
            self._book.recovered(answered, horizon)
        config = ConsumerConfig(
            durable_name=self.consumer_name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq or None,
            ack_wait=self._config.ack_wait_s,
            max_ack_pending=10_000,
            max_deliver=-1,
        )
        self._subs.append(await while_api_away(lambda: self._js.subscribe(
            self._subjects.actions(self.session_id), stream=self._stream, durable=self.consumer_name,
            cb=self._on_action, manual_ack=True, config=config, pending_msgs_limit=-1, pending_bytes_limit=-1,
        )))
        self._subs.append(await self._nc.subscribe(self._subjects.lookup(self.session_id), cb=self._on_lookup))

    async def _unacked_from(self) -> int:
        """The first stream sequence not acked by the old consumer; the old consumer is removed."""
        try:
            info = await self._js.consumer_info(self._stream, self.consumer_name)
        except nats.js.errors.NotFoundError:
            return 0
        await self._js.delete_consumer(self._stream, self.consumer_name)
        return info.ack_floor.stream_seq + 1 if info.ack_floor and info.ack_floor.stream_seq else 0

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(self._bound(coro))
        task.set_name(f"{self.session_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bound(self, coro: Awaitable[Any]) -> Any:
        """Every log line of the session's tasks names the session and its worker."""
        with structlog.contextvars.bound_contextvars(session_id=self.session_id, worker_id=self.handle.worker_id):
            return await coro

    # ------------------------------------------------------------------ intake
    async def _on_action(self, msg: Msg) -> None:
        """Whatever a message holds, it is answered and acked: a bad one never stays in the stream."""
        try:
            await self._intake(msg)
        except Exception as exc:
            log.exception("action_intake_failed", session_id=self.session_id, subject=msg.subject)
            self._reject(msg, wants_json(msg.headers), None, codes.INTERNAL, f"the worker failed on this message: {exc!r}")

    async def _intake(self, msg: Msg) -> None:
        self.last_activity = time.time()
        as_json = wants_json(msg.headers)
        seq = _stream_seq(msg)
        try:
            action = decode_action(msg.data, json=as_json, subject_kind=self._subjects.action_kind(msg.subject))
        except ActionDecodeError as exc:
            return self._reject(msg, as_json, exc.action_id, exc.code, exc.message)
        if action.id in self._book:  # answered: the same message again, or a repeat of the id
            if not self._book.is_redelivery(action.id, seq):
                await self._republish(action.id, as_json)
            return await _ack(msg)
        job = self._jobs.get(action.id)
        if job is not None:  # held: the same message again (it will be acked), or a repeat (answered with it)
            if seq != job.seq:
                job.repeats.append(msg)
                job.repeat_json.append(as_json)
            return
        if self._closed:
            return self._reject(msg, as_json, action.id, self._close_code, self._close_reason)
        job = _Job(action=action, msg=msg, json=as_json, seq=seq, arrived=time.monotonic())
        self._jobs[action.id] = job
        self._route(job)

    def _route(self, job: _Job) -> None:
        action = job.action
        if isinstance(action, Confirm):  # never waits in a lane (it may release the head of one), never gated
            return self._finish(job, self._confirm(action))
        handler = self._routes.get(action.__struct_config__.tag)
        if handler is None:
            return self._finish(job, self._error(job, codes.UNSUPPORTED, (
                f"no handler serves {action.__struct_config__.tag!r} actions in this session (handlers: "
                f"{', '.join(self._config.handlers)}); a plugin or the MCP bridge that serves it is not enabled")))
        if isinstance(action, CmdRun) and action.is_input and action.command in OUT_OF_BAND_KEYS:
            # C-c and friends must reach a command that blocks its shell's lane, so they skip the queue.
            self._spawn(self.execute(job, handler), f"key:{action.id}")
            return
        lane_name = f"{type(handler).__name__}:{handler.lane(action)}"
        lane = self._lanes.get(lane_name)
        if lane is None:
            lane = self._lanes[lane_name] = _Lane(self, lane_name)
            self._spawn(lane.run(), f"lane:{lane_name}")
        try:
            lane.tell((job, handler))
        except InboxFull as exc:
            self._finish(job, self._error(job, codes.NO_CAPACITY, str(exc)))

    def _confirm(self, confirm: Confirm) -> ConfirmResult | Error:
        held = self._held.get(confirm.action_id)
        if held is None or held.done():
            return Error(id=new_id(), cause=confirm.id, session_id=self.session_id, code=codes.NOT_HELD,
                         message=f"action {confirm.action_id} is not waiting for confirmation in this session")
        held.set_result(confirm)
        return ConfirmResult(id=new_id(), cause=confirm.id, session_id=self.session_id, action_id=confirm.action_id,
                             approved=confirm.approve)

    def _reject(self, msg: Msg, as_json: bool, cause: str | None, code: str, message: str) -> None:
        """Answer a message that will not run (undecodable, closed session...), then ack it."""
        error = self._masked(Error(id=new_id(), cause=cause, session_id=self.session_id, code=code, message=message))
        metrics.failures.labels("worker", code).inc()
        self._outbox.send(Outgoing(action_id=cause, subject=self._subjects.obs(self.session_id, "error"),
                                   data=encode(error, json=as_json), headers=final_headers(error.id, as_json), acks=[msg]))

    async def _republish(self, action_id: str, as_json: bool) -> None:
        data = await self._book.stored(action_id, as_json=as_json)
        if data is None:
            error = Error(id=new_id(), cause=action_id, session_id=self.session_id, code=codes.INTERNAL,
                          message=f"action {action_id} was answered, but its answer is no longer stored")
            data = encode(error, json=as_json)
        obs = _peek_kind(data, as_json)
        await self._nc.publish(self._subjects.obs(self.session_id, obs[0]), data,
                               headers=final_headers(obs[1], as_json))

    async def _on_lookup(self, msg: Msg) -> None:
        """A client repeated an action id (the stream dropped the copy): its stored answer, or an
        empty reply while it is still pending. After a worker restart the executor remembers."""
        if not msg.reply:
            return
        try:
            reply = await self._lookup(msg.data.decode(errors="replace"))
        except Exception as exc:
            log.exception("lookup_failed", session_id=self.session_id)
            reply = encode(self._masked(Error(id=new_id(), session_id=self.session_id, code=codes.INTERNAL, message=repr(exc))))
        await self._nc.publish(msg.reply, reply)

    async def _lookup(self, action_id: str) -> bytes:
        if not valid_id(action_id):
            return encode(Error(id=new_id(), session_id=self.session_id, code=codes.BAD_PAYLOAD,
                                message="a lookup takes one valid action id"))
        if action_id in self._book:
            return await self._book.stored(action_id, as_json=False) or b""
        if action_id in self._jobs:
            return b""
        try:
            done = await self._ctx.client.result(action_id)
        except ExecutorUnavailable:
            done = None
        return encode(self._masked(done)) if done is not None else b""  # the executor's copy is not masked

    # --------------------------------------------------------------- execution
    async def execute(self, job: _Job, handler: Handler) -> None:
        started = time.time()
        try:
            metrics.queue_wait_seconds.observe(max(started - job.msg.metadata.timestamp.timestamp(), 0.0))
        except (AttributeError, ValueError, nats.errors.Error):
            pass  # not a JetStream message (cannot happen through the consumer; keep the hot path safe)
        with structlog.contextvars.bound_contextvars(action_id=job.action.id):
            final = await self._gated(job)
            if final is None:
                job.running = True
                final = await self._outcome(job, handler)
            if job.stream is not None and job.stream.held:
                await self._publish_chunk(job, job.stream.flush())  # the last of its output, before its answer
        metrics.action_seconds.labels(job.action.__struct_config__.tag).observe(time.time() - started)
        self._finish(job, final)

    async def _gated(self, job: _Job) -> Rejected | None:
        """None when the gates let the action run (at once, or once a confirm released it)."""
        if not self._gates:
            return None
        verdict, gate = await self._gates.check(job.action, self._ctx)
        if isinstance(verdict, Deny):
            return self._rejected(job, verdict, gate, "policy", verdict.code, verdict.reason)
        if not isinstance(verdict, Hold):
            return None
        action = job.action
        release: asyncio.Future[Confirm] = asyncio.get_running_loop().create_future()
        self._held[action.id] = release
        try:
            required = self._masked(ConfirmationRequired(
                id=new_id(), cause=action.id, session_id=self.session_id, action_id=action.id,
                action_kind=action.__struct_config__.tag, risk=verdict.risk, reason=verdict.reason,
                summary=verdict.summary or summary_of(action), analyzer=verdict.analyzer or gate, timeout_s=verdict.timeout_s))
            await self._nc.publish(self._subjects.obs(self.session_id, "confirmation_required"),
                                   encode(required, json=job.json), headers=headers_for(job.json))
            log.info("confirmation_required", session_id=self.session_id, action_id=action.id, gate=gate,
                     analyzer=required.analyzer, risk=verdict.risk, reason=verdict.reason)
            confirm = await asyncio.wait_for(release, verdict.timeout_s)
        except TimeoutError:
            return self._rejected(job, verdict, gate, "timeout", codes.CONFIRMATION_TIMEOUT,
                                  f"{verdict.reason} (no confirm came within {verdict.timeout_s:g} s)")
        finally:
            self._held.pop(action.id, None)
        if not confirm.approve:
            return self._rejected(job, verdict, gate, "approver", codes.ACTION_REJECTED, verdict.reason, approver=confirm.by)
        log.info("action_approved", session_id=self.session_id, action_id=action.id, by=confirm.by or None)
        return None

    def _rejected(self, job: _Job, verdict: Deny | Hold, gate: str, decided_by: Literal["policy", "approver", "timeout"], code: str, reason: str,
                  approver: str = "") -> Rejected:
        log.info("action_rejected", session_id=self.session_id, action_id=job.action.id, decided_by=decided_by,
                 code=code, risk=verdict.risk, analyzer=verdict.analyzer or gate, approver=approver or None)
        return Rejected(id=new_id(), cause=job.action.id, session_id=self.session_id, risk=verdict.risk, reason=reason,
                        decided_by=decided_by, code=code, analyzer=verdict.analyzer or gate, approver=approver)

    async def _outcome(self, job: _Job, handler: Handler) -> AnyObservation:
        action = job.action
        if self._dead is not None:
            return self._error(job, codes.SANDBOX_LOST, f"the sandbox died before this action ran: {self._dead}")
        try:
            final = await handler.handle(action, lambda chunk: self._chunk(job, chunk))
        except SandboxDied as exc:
            return self._sandbox_died(job, exc.reason)
        except Exception as exc:  # a bug here must still answer the action, or it would be redelivered forever
            log.exception("action_failed", session_id=self.session_id, action_id=action.id)
            return self._error(job, codes.INTERNAL, f"the worker failed on this action: {exc!r}")
        if final.cause != action.id or final.session_id != self.session_id:
            final = msgspec.structs.replace(final, cause=action.id, session_id=self.session_id)
        if job.dropped and isinstance(final, CmdOutput):
            note = (f"{job.dropped} bytes of streamed output were not sent as cmd_chunk (output quota of this "
                    "action or session reached); the command was not stopped")
            final = msgspec.structs.replace(final, hint=f"{final.hint} {note}" if final.hint else note)
        return final

    def _sandbox_died(self, job: _Job, reason: str) -> Error:
        if self._closed:
            return self._error(job, self._close_code, f"{self._close_reason} while the action ran")
        if self._dead is None:
            self._dead = reason
            if self._on_dead is not None:
                self._on_dead(self.session_id, reason)  # the worker closes the session, in a task of its own
        return self._error(job, codes.SANDBOX_DIED, f"the sandbox died: {reason}")

    async def _chunk(self, job: _Job, chunk: CmdChunk) -> None:
        size = len(chunk.data)
        job.streamed += size
        self._streamed += size
        self.last_activity = time.time()
        if job.streamed > self._config.action_output_quota_bytes or self._streamed > self._config.session_output_quota_bytes:
            job.dropped += size
            return
        if self._masker is not None:
            # A tail that may begin a secret waits for the next chunk, so the chunks are ours to number.
            job.stream = job.stream or self._masker.stream()
            return await self._publish_chunk(job, job.stream.feed(chunk.data))
        if chunk.cause != job.action.id or chunk.session_id != self.session_id:
            chunk = msgspec.structs.replace(chunk, cause=job.action.id, session_id=self.session_id)
        await self._publish(job, chunk, size)

    async def _publish_chunk(self, job: _Job, data: str) -> None:
        """Publish masked output of ``job`` as its next chunk (nothing when all of it is held back)."""
        if not data:
            return
        assert job.stream is not None
        chunk = CmdChunk(id=new_id(), cause=job.action.id, session_id=self.session_id, seq=job.stream.seq, data=data)
        job.stream.seq += 1
        await self._publish(job, chunk, len(data))

    async def _publish(self, job: _Job, chunk: CmdChunk, size: int) -> None:
        headers = {**(headers_for(job.json) or {}), "Nats-TTL": f"{max(int(self._config.chunk_ttl_s), 1)}s"}
        data = encode(chunk, json=job.json)
        if len(data) > self._nc.max_payload - PAYLOAD_HEADROOM:
            job.dropped += size
            return
        await self._nc.publish(self._subjects.obs(self.session_id, "cmd_chunk"), data, headers=headers)

    async def _keep_acking(self) -> None:
        """Tell JetStream that the actions held here (running, queued, waiting for a confirm) are
        being worked on, so they are not redelivered; one loop for the session, not one per action."""
        while True:
            await asyncio.sleep(self._config.ack_wait_s / 3)
            for job in list(self._jobs.values()):
                try:
                    await job.msg.in_progress()
                except nats.errors.Error:
                    pass

    def _error(self, job: _Job, code: str, message: str) -> Error:
        return Error(id=new_id(), cause=job.action.id, session_id=self.session_id, code=code, message=message)

    # ------------------------------------------------------------------ answers
    def answer_running(self, code: str, reason: str) -> int:
        """Answer the actions executing now with ``code`` (their sandbox is gone: they must not run
        again elsewhere); those queued behind them stay for whoever serves the session next."""
        running = [job for job in self._jobs.values() if job.running and not job.answered]
        for job in running:
            self._finish(job, self._error(job, code, reason))
        return len(running)

    def _finish(self, job: _Job, final: AnyObservation) -> None:
        """Hand the job's one final answer to the outbox; never waits, so it cannot be cut short."""
        if job.answered:
            return
        job.answered = True
        self._jobs.pop(job.action.id, None)
        if isinstance(final, (Error, Rejected)):
            metrics.failures.labels("worker", final.code).inc()
        final, data = self._encoded(self._masked(final), job.json)
        headers = final_headers(final.id, job.json)
        copies = [(data if as_json == job.json else self._encoded(final, as_json)[1], final_headers(final.id, as_json))
                  for as_json in job.repeat_json]
        self._book.record(job.action.id, job.seq, data, job.json)
        log.info("action_answered", session_id=self.session_id, worker_id=self.handle.worker_id,
                 action_id=job.action.id, kind=job.action.__struct_config__.tag, outcome=_outcome_of(final),
                 ms=round((time.monotonic() - job.arrived) * 1000, 2) if job.arrived else None)
        self._outbox.send(Outgoing(action_id=job.action.id, subject=self._subjects.obs(self.session_id, final.__struct_config__.tag),
                                   data=data, headers=headers, acks=[job.msg, *job.repeats], copies=copies))

    async def _confirmed(self, item: Outgoing, seq: int) -> None:
        if item.action_id is not None and item.action_id in self._book:
            self._book.confirmed(item.action_id, seq)
        for msg in item.acks:
            await _ack(msg)

    def _masked(self, obs: ObsT) -> ObsT:
        """``obs`` with the session's secrets replaced in every string it holds (the same object without secrets)."""
        return obs if self._masker is None else self._masker.mask(obs)

    def _encoded(self, obs: AnyObservation, as_json: bool) -> tuple[AnyObservation, bytes]:
        """An observation over the broker's max payload (e.g. a big file read as JSON, where escaping
        grows it) becomes an error that says so, instead of a failed publish and a lost answer."""
        data = encode(obs, json=as_json)
        if len(data) <= self._nc.max_payload - PAYLOAD_HEADROOM:
            return obs, data
        replacement = Error(
            id=obs.id, cause=obs.cause, session_id=self.session_id, code=codes.PAYLOAD_TOO_LARGE,
            message=f"the {obs.__struct_config__.tag} observation is {len(data)} bytes encoded, over the broker's "
                    f"max payload of {self._nc.max_payload}; read or print it in smaller parts",
        )
        return replacement, encode(replacement, json=as_json)

    async def _report_plugins(self, plugins: list[PluginStatus]) -> None:
        if self._info is not None and self._info.status in ("ready", "recovered"):
            await self.publish_status(msgspec.structs.replace(self._info, plugins=plugins))

    async def publish_status(self, info: SessionInfo) -> None:
        info = self._masked(info)  # a failed plugin's reason may quote the sandbox's output
        self._info = info
        try:
            await self._nc.publish(self._subjects.status(self.session_id), encode(info))
        except nats.errors.Error as exc:  # the broker is gone: the status is lost, not the worker
            log.warning("status_unpublished", session_id=self.session_id, status=info.status, error=repr(exc))

    # ------------------------------------------------------------------- close
    async def aclose(self, *, answer: bool = True, delete_consumer: bool = True, code: str = codes.SESSION_CLOSED,
                     reason: str = "the session was closed") -> None:
        """Stop intake; with ``answer``, every action held (queued or running) is answered with
        ``code`` and acked before the consumer goes away. Without it (a worker stopping while its
        sandboxes live on), held actions stay in the stream for the worker that adopts them."""
        if self._closed:
            return
        self._closed = True
        self._close_code, self._close_reason = code, reason
        await unsubscribe_all(self._subs)
        me = asyncio.current_task()  # a close may come from this runner's own task (a sandbox found dead)
        work = [t for t in self._tasks if t is not me and not t.get_name().endswith(":outbox")]
        await cancel_and_wait(work)
        if answer:
            for job in list(self._jobs.values()):
                self._finish(job, self._error(job, code, f"{reason} before this action finished"))
            if not await self._outbox.drain(CLOSE_DRAIN_S):
                log.warning("session_answers_unconfirmed", session_id=self.session_id, pending=self._outbox.pending)
            await self._answer_undelivered(code, reason)
        elif not await self._outbox.drain(CLOSE_DRAIN_S):  # answers already made still go out
            log.warning("session_answers_unconfirmed", session_id=self.session_id, pending=self._outbox.pending)
        await cancel_and_wait([t for t in self._tasks if t is not me])
        if delete_consumer:
            try:
                await self._js.delete_consumer(self._stream, self.consumer_name)
            except nats.errors.Error:
                pass
        for handler in {id(h): h for h in self._routes.values()}.values():
            try:
                await handler.aclose()
            except Exception:
                log.exception("handler_close_failed", session_id=self.session_id, handler=type(handler).__name__)
        await self._gates.aclose()
        await self._ctx.client.aclose()
        live_secrets.discard(self.session_id)


    async def _answer_undelivered(self, code: str, reason: str) -> None:
        """Actions published just before the close that never reached this runner are in the
        stream past the consumer's ack floor: answer those too (what is answered is skipped)."""
        try:
            info = await self._js.consumer_info(self._stream, self.consumer_name)
            since = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            count = await answer_unanswered(self._nc, self._subjects, self._stream, self.session_id, since=since,
                                            code=code, reason=f"{reason} before this action ran")
        except (nats.errors.Error, OSError) as exc:
            log.warning("close_scan_failed", session_id=self.session_id, error=repr(exc))
            return
        if count:
            log.info("session_undelivered_answered", session_id=self.session_id, count=count)


def _outcome_of(obs: AnyObservation) -> str:
    """One word for the canonical log line: a command's status and exit code, an error's code."""
    if isinstance(obs, CmdOutput):
        return obs.status if obs.exit_code is None else f"{obs.status}:{obs.exit_code}"
    if isinstance(obs, Error):
        return f"error:{obs.code}"
    if isinstance(obs, Rejected):
        return f"rejected:{obs.decided_by}"
    return obs.__struct_config__.tag


async def _ack(msg: Msg) -> None:
    try:
        await msg.ack()
    except nats.errors.Error as exc:  # acked already, or the broker is away: a redelivery is recognised
        log.debug("ack_failed", subject=msg.subject, error=repr(exc))


def _stream_seq(msg: Msg) -> int | None:
    try:
        return msg.metadata.sequence.stream
    except (AttributeError, ValueError, nats.errors.Error):
        return None


_kind_json = msgspec.json.Decoder(dict[str, msgspec.Raw])
_kind_mp = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])


def _peek_kind(data: bytes, as_json: bool) -> tuple[str, str]:
    """(kind, id) of an encoded observation, without decoding the rest of it."""
    fields = (_kind_json if as_json else _kind_mp).decode(data)
    decode = msgspec.json.decode if as_json else msgspec.msgpack.decode
    return decode(fields["kind"], type=str), decode(fields["id"], type=str)
