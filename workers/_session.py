"""One session on a worker: its durable action consumer, its lanes, its idempotency table.

Actions arrive in publish order from a durable JetStream consumer. Each goes to a lane: the
shell it names (``cmd_run``), else ``main``. A lane executes one action at a time, so a
session's actions run in order except across shells. An action is acked only after its final
observation is published: a worker that dies mid-action leaves it in the stream.
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
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
import nats.js.errors
import structlog

from actors import metrics
from actors._kernel import Actor, InboxFull
from protocol import (
    AnyAction,
    AnyObservation,
    CmdChunk,
    CmdRun,
    Error,
    SessionInfo,
    Subjects,
    codes,
    decode_action,
    encode,
    headers_for,
    new_id,
    wants_json,
)
from protocol._codec import ActionDecodeError

from .backends import SandboxHandle
from .executor.client import ExecutorClient, ExecutorUnavailable

log = structlog.get_logger()

PAYLOAD_HEADROOM = 4096
"""Bytes kept free under the broker's max payload for headers and protocol framing."""
OUT_OF_BAND_KEYS = frozenset({"C-c", "C-d", "C-z", "C-\\"})
"""``is_input`` keys that bypass their shell's queue (an interrupt must not wait behind what it interrupts)."""
DONE_CAPACITY = 10_000
"""Final observations kept per session to answer repeated action ids."""


class _Job(msgspec.Struct, kw_only=True):
    action: AnyAction
    msg: Msg
    json: bool


class _Lane(Actor[_Job]):
    """Executes one session's actions for one shell, one at a time, in order."""

    def __init__(self, runner: SessionRunner, lane: str) -> None:
        super().__init__(inbox_size=10_000)
        self.name = f"lane:{lane}"
        self._runner = runner

    def describe(self, job: _Job) -> dict[str, Any]:
        return {"session_id": self._runner.session_id, "action_id": job.action.id, "kind": job.action.__struct_config__.tag}

    async def handle(self, job: _Job) -> None:
        await self._runner.execute(job)


class SessionRunner:
    """Serves one session's actions on this worker until closed."""

    def __init__(self, nc: Nats, subjects: Subjects, stream: str, handle: SandboxHandle, *,
                 ack_wait_s: float = 30.0, on_dead: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream
        self.handle = handle
        self.session_id = handle.session_id
        self._client = ExecutorClient(key=handle.key, socket_path=handle.socket_path, host=handle.host, port=handle.port)
        self._ack_wait_s = ack_wait_s
        self._on_dead = on_dead
        self._lanes: dict[str, _Lane] = {}
        self._lane_tasks: list[asyncio.Task[None]] = []
        self._done: OrderedDict[str, AnyObservation] = OrderedDict()
        self._inflight: set[str] = set()
        self._subs: list[Any] = []
        self._closed = False
        self._close_code, self._close_reason = codes.UNKNOWN_SESSION, "the session was closed"
        self.last_activity = time.time()

    @property
    def consumer_name(self) -> str:
        return f"session_{self.session_id}"

    async def start(self, *, recover: bool = False) -> None:
        """Subscribe the session's actions. With ``recover`` (a restarted worker adopting the
        sandbox), every action not yet acked is delivered again at once instead of after the
        ack wait: the executor answers those it already ran from its own table."""
        start_seq = await self._unacked_from() if recover else 0
        config = ConsumerConfig(
            durable_name=self.consumer_name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq or None,
            ack_wait=self._ack_wait_s,
            max_ack_pending=10_000,
            max_deliver=-1,
        )
        self._subs.append(await self._js.subscribe(
            self._subjects.actions(self.session_id), stream=self._stream, durable=self.consumer_name,
            cb=self._on_action, manual_ack=True, config=config, pending_msgs_limit=-1, pending_bytes_limit=-1,
        ))
        self._subs.append(await self._nc.subscribe(self._subjects.lookup(self.session_id), cb=self._on_lookup))

    async def _unacked_from(self) -> int:
        """The first stream sequence not acked by the old consumer; the old consumer is removed."""
        try:
            info = await self._js.consumer_info(self._stream, self.consumer_name)
        except nats.js.errors.NotFoundError:
            return 0
        await self._js.delete_consumer(self._stream, self.consumer_name)
        return info.ack_floor.stream_seq + 1 if info.ack_floor and info.ack_floor.stream_seq else 0

    # ------------------------------------------------------------------ intake
    async def _on_action(self, msg: Msg) -> None:
        self.last_activity = time.time()
        as_json = wants_json(msg.headers)
        parsed = self._subjects.parse_session_subject(msg.subject)
        kind = parsed[2] if parsed else None
        try:
            action = decode_action(msg.data, json=as_json, subject_kind=kind)
        except ActionDecodeError as exc:
            await self._publish(Error(id=new_id(), cause=exc.action_id, session_id=self.session_id,
                                      code=exc.code, message=exc.message), as_json)
            await msg.ack()
            return
        done = self._done.get(action.id)
        if done is not None:  # a repeated id: the stored observation again, never a second execution
            await self._publish(done, as_json)
            await msg.ack()
            return
        if action.id in self._inflight:
            return  # a redelivery of something still running: the running one will ack it
        if self._closed:
            await self._publish(Error(id=new_id(), cause=action.id, session_id=self.session_id,
                                      code=self._close_code, message=self._close_reason), as_json)
            await msg.ack()
            return
        self._inflight.add(action.id)
        if isinstance(action, CmdRun) and action.is_input and action.command in OUT_OF_BAND_KEYS:
            # C-c and friends must reach a command that blocks its shell's lane, so they skip the queue.
            task = asyncio.create_task(self.execute(_Job(action=action, msg=msg, json=as_json)))
            self._lane_tasks.append(task)
            return
        lane_name = action.shell if isinstance(action, CmdRun) else "main"
        lane = self._lanes.get(lane_name)
        if lane is None:
            lane = self._lanes[lane_name] = _Lane(self, lane_name)
            self._lane_tasks.append(asyncio.create_task(lane.run(), name=f"{self.session_id}:{lane_name}"))
        try:
            lane.tell(_Job(action=action, msg=msg, json=as_json))
        except InboxFull as exc:
            self._inflight.discard(action.id)
            await self._publish(Error(id=new_id(), cause=action.id, session_id=self.session_id,
                                      code=codes.NO_CAPACITY, message=str(exc)), as_json)
            await msg.ack()

    async def _on_lookup(self, msg: Msg) -> None:
        """A client repeated an action id (the stream dropped the copy): its stored answer, or an
        empty reply while it is still pending. After a worker restart the executor remembers."""
        action_id = msg.data.decode(errors="replace")
        done = self._done.get(action_id)
        if done is None and action_id not in self._inflight:
            try:
                done = await self._client.result(action_id)
            except ExecutorUnavailable:
                done = None
        if msg.reply:
            await self._nc.publish(msg.reply, encode(done) if done is not None else b"")

    # --------------------------------------------------------------- execution
    async def execute(self, job: _Job) -> None:
        action = job.action
        started = time.time()
        try:
            metrics.queue_wait_seconds.observe(max(started - job.msg.metadata.timestamp.timestamp(), 0.0))
        except (AttributeError, ValueError, nats.errors.Error):
            pass  # not a JetStream message (cannot happen through the consumer; keep the hot path safe)
        keepalive = asyncio.create_task(self._keep_acking(job.msg))
        final: AnyObservation | None = None
        try:
            async for obs in self._client.execute(action):
                if isinstance(obs, CmdChunk):
                    await self._publish(obs, job.json)
                else:
                    final = obs
        except ExecutorUnavailable as exc:
            final = await self._sandbox_failed(action, exc)
        except Exception as exc:  # a bug here must still answer the action, or it would be redelivered forever
            log.exception("action_failed", session_id=self.session_id, action_id=action.id)
            final = Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.INTERNAL,
                          message=f"the worker failed on this action: {exc!r}")
        finally:
            keepalive.cancel()
        if final is None:
            final = Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.SANDBOX_FAILED,
                          message="the executor ended its answer without a final observation")
        metrics.action_seconds.labels(action.__struct_config__.tag).observe(time.time() - started)
        if isinstance(final, Error):
            metrics.failures.labels("worker", final.code).inc()
        self._remember(action.id, final)
        await self._publish(final, job.json)
        self._inflight.discard(action.id)
        await job.msg.ack()

    async def _sandbox_failed(self, action: AnyAction, exc: ExecutorUnavailable) -> Error:
        if self._closed:
            return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.UNKNOWN_SESSION,
                         message=f"session {self.session_id} was closed while the action ran")
        reason = await self._dead_reason()
        if reason is None:
            return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.SANDBOX_FAILED,
                         message=f"the sandbox's executor did not answer: {exc}")
        if self._on_dead is not None:
            asyncio.create_task(self._on_dead(self.session_id, reason))
        return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.SANDBOX_DIED,
                     message=f"the sandbox died: {reason}")

    async def _dead_reason(self) -> str | None:
        try:
            await self._client.health()
            return None
        except ExecutorUnavailable as exc:
            return str(exc)

    async def _keep_acking(self, msg: Msg) -> None:
        """Tell JetStream a long action is still being worked on, so it is not redelivered."""
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            try:
                await msg.in_progress()
            except nats.errors.Error:
                pass

    def _remember(self, action_id: str, obs: AnyObservation) -> None:
        self._done[action_id] = obs
        if len(self._done) > DONE_CAPACITY:
            self._done.popitem(last=False)

    async def _publish(self, obs: AnyObservation, as_json: bool) -> None:
        data = encode(obs, json=as_json)
        if len(data) > self._nc.max_payload - PAYLOAD_HEADROOM:
            obs, data = self._too_large(obs, len(data), as_json)
        subject = self._subjects.obs(self.session_id, obs.__struct_config__.tag)
        await self._nc.publish(subject, data, headers=headers_for(as_json))

    def _too_large(self, obs: AnyObservation, size: int, as_json: bool) -> tuple[AnyObservation, bytes]:
        """An observation over the broker's max payload (e.g. a big file read as JSON, where escaping
        grows it) becomes an error that says so, instead of a failed publish and a lost answer."""
        replacement = Error(
            id=obs.id, cause=obs.cause, session_id=self.session_id, code=codes.PAYLOAD_TOO_LARGE,
            message=f"the {obs.__struct_config__.tag} observation is {size} bytes encoded, over the broker's "
                    f"max payload of {self._nc.max_payload}; read or print it in smaller parts",
        )
        return replacement, encode(replacement, json=as_json)

    async def publish_status(self, info: SessionInfo) -> None:
        try:
            await self._nc.publish(self._subjects.status(self.session_id), encode(info))
        except nats.errors.Error as exc:  # the broker is gone: the status is lost, not the worker
            log.warning("status_unpublished", session_id=self.session_id, status=info.status, error=repr(exc))

    # ------------------------------------------------------------------- close
    async def aclose(self, *, delete_consumer: bool = True, code: str = codes.UNKNOWN_SESSION,
                     reason: str = "the session was closed before this action ran") -> None:
        """Stop intake; queued actions are answered with an error; the consumer goes away."""
        if self._closed:
            return
        self._closed = True
        self._close_code, self._close_reason = code, reason
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass
        self._subs.clear()
        for task in self._lane_tasks:
            task.cancel()
        await asyncio.gather(*self._lane_tasks, return_exceptions=True)
        for lane in self._lanes.values():
            while not lane._inbox.empty():
                job = lane._inbox.get_nowait()
                try:
                    await self._publish(Error(id=new_id(), cause=job.action.id, session_id=self.session_id,
                                              code=code, message=reason), job.json)
                    await job.msg.ack()
                except nats.errors.Error:
                    pass  # unacked, it stays in the stream: the controller answers it if no one else does
        if delete_consumer:
            try:
                await self._js.delete_consumer(self._stream, self.consumer_name)
            except nats.errors.Error:
                pass
        await self._client.aclose()
