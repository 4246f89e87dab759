"""The Python SDK: ``Client`` (control requests) and ``Session`` (actions and observations).

    async with await Client.connect("nats://127.0.0.1:4222") as client:
        async with await client.create_session() as session:
            out = await session.run(CmdRun(id=new_id(), command="echo hi"))
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator

import msgspec
import nats
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
import nats.errors
from nats.js.api import ConsumerConfig, DeliverPolicy
import nats.js.errors

from . import _errors as codes
from ._codec import decode_observation, decode_reply, encode, wants_json
from ._connect import connect_nats, unsubscribe_all
from ._creds import Credentials, credentials_from
from ._errors import ConnectionLost, RequestError
from ._events import (
    INTERIM_KINDS,
    AnyAction,
    AnyObservation,
    AnyReply,
    BrowserOutput,
    BrowseInteractive,
    BrowseUrl,
    CmdOutput,
    CmdRun,
    Confirm,
    ConfirmResult,
    Error,
    ErrorReply,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    FileWrite,
    FileWritten,
    IPythonOutput,
    IPythonRun,
    McpCall,
    McpList,
    McpResult,
    McpTools,
    PortInfo,
    PortRef,
    SessionInfo,
    SessionList,
    SessionRef,
    SessionSpec,
    VscodeInfo,
    WorkerInfo,
    WorkerList,
    WorkerRef,
)
from ._ids import new_id
from ._subjects import DEFAULT_PREFIX, Subjects

CONTROL_TIMEOUT_S = 30.0
NO_CONTROLLER_WAIT_S = 3.0
"""How long a control request keeps retrying while no controller is subscribed."""
CLOSED_GRACE_S = 1.0
"""After a ``closed`` status, how long a pending action waits for its real answer before the SDK
answers it ``unknown_session`` itself."""
VSCODE_TIMEOUT_S = 90.0
"""The first ``vscode`` request starts code-server in the sandbox (a few seconds, more on a busy host)."""


async def replay(nc: Nats, subject: str | list[str], *, since: int = 0, follow: bool = False, idle_s: float = 5.0,
                 stream: str | None = None) -> AsyncIterator[Msg]:
    """Stored messages on ``subject`` (or any of several) from stream sequence ``since``, oldest
    first, through an ordered consumer. With ``follow`` it keeps yielding new ones; without, it
    stops once caught up (the consumer has nothing pending), or after ``idle_s`` of silence."""
    config = start_at(since)
    first = subject
    if isinstance(subject, list):
        config = config or ConsumerConfig()
        config.filter_subjects = list(subject)
        first = subject[0]
    sub = await nc.jetstream().subscribe(first, stream=stream, ordered_consumer=True, config=config)
    try:
        if not follow:
            info = await sub.consumer_info()
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                return  # nothing stored, and nothing already on its way to us
        while True:
            try:
                msg = await sub.next_msg(timeout=None if follow else idle_s)
            except nats.errors.TimeoutError:
                return
            yield msg
            if not follow and msg.metadata.num_pending == 0:
                return
    finally:
        await unsubscribe_all([sub])


def start_at(seq: int) -> ConsumerConfig | None:
    """Consumer config that starts at stream sequence ``seq`` (None: from the beginning)."""
    if seq <= 0:
        return None
    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq)


class Client:
    """A connection to corral through NATS. Use ``await Client.connect(url)``."""

    def __init__(self, nc: Nats, subjects: Subjects, *, owns_connection: bool = True, role: str = "") -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.subjects = subjects
        self.role = role
        """The broker role of the credentials it logged in with (``client``, ``approver``, ``admin``, …), if any."""
        self._owns = owns_connection

    @classmethod
    async def connect(cls, url: str | None = None, *, prefix: str = DEFAULT_PREFIX,
                      creds: str | os.PathLike[str] | Credentials | None = None, **options: Any) -> Client:
        """Connect to ``url`` (default: the credentials' broker, else ``nats://127.0.0.1:4222``).

        ``creds`` (or ``$CORRAL_NATS_CREDS``) is a credentials file from ``corral tenant add``:
        the client logs in as that user and, for a tenant's user, uses the tenant's subjects."""
        found = credentials_from(creds, env=True)
        url = url or (found.nats_url if found else "nats://127.0.0.1:4222")
        nc = await connect_nats(url, name=options.pop("name", "corral-client"), creds=found, **options)
        return cls(nc, found.subjects if found else Subjects(prefix), role=found.role if found else "")

    @property
    def nats(self) -> Nats:
        return self._nc

    async def request(self, verb: str, body: msgspec.Struct | None = None, *, timeout_s: float = CONTROL_TIMEOUT_S) -> AnyReply:
        """One control request; an error reply raises RequestError with its code."""
        payload = encode(body) if body is not None else b""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + NO_CONTROLLER_WAIT_S
        delay = 0.05
        while True:
            try:
                msg = await self._nc.request(self.subjects.ctl(verb), payload, timeout=timeout_s)
                break
            except nats.errors.NoRespondersError:
                # A controller restarting or failing over is gone for a moment: ride it out briefly.
                if loop.time() + delay > give_up:
                    raise ConnectionLost(codes.WORKER_UNAVAILABLE,
                                         "no corral controller is answering (is `corral up` running?)") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except nats.errors.TimeoutError:
                raise ConnectionLost(codes.TIMEOUT, f"controller did not answer {verb} within {timeout_s} s") from None
        reply = decode_reply(msg.data, json=wants_json(msg.headers))
        if isinstance(reply, ErrorReply):
            raise RequestError(reply.code, reply.message)
        return reply

    async def create_session(self, **spec: Any) -> Session:
        spec_struct = msgspec.convert(spec, SessionSpec)
        info = await self.request("create", spec_struct)
        assert isinstance(info, SessionInfo)
        return await Session.open(self, info)

    async def attach(self, session_id: str) -> Session:
        return await Session.open(self, await self.get_session(session_id))

    async def get_session(self, session_id: str) -> SessionInfo:
        info = await self.request("get", SessionRef(session_id=session_id))
        assert isinstance(info, SessionInfo)
        return info

    async def close_session(self, session_id: str) -> SessionInfo:
        info = await self.request("close", SessionRef(session_id=session_id))
        assert isinstance(info, SessionInfo)
        return info

    async def pause_session(self, session_id: str) -> SessionInfo:
        """Freeze every process of the session's sandbox; actions wait until it is resumed."""
        info = await self.request("pause", SessionRef(session_id=session_id))
        assert isinstance(info, SessionInfo)
        return info

    async def resume_session(self, session_id: str) -> SessionInfo:
        info = await self.request("resume", SessionRef(session_id=session_id))
        assert isinstance(info, SessionInfo)
        return info

    async def expose(self, session_id: str, port: int) -> PortInfo:
        """Forward TCP ``port`` of the sandbox's loopback to a host port (no sandbox network needed)."""
        info = await self.request("expose", PortRef(session_id=session_id, port=port))
        assert isinstance(info, PortInfo)
        return info

    async def unexpose(self, session_id: str, port: int) -> PortInfo:
        """Stop forwarding ``port``; the answer is the forward that was closed."""
        info = await self.request("unexpose", PortRef(session_id=session_id, port=port))
        assert isinstance(info, PortInfo)
        return info

    async def vscode(self, session_id: str) -> VscodeInfo:
        """A VS Code in the browser on the session's workdir (started on the first request)."""
        info = await self.request("vscode", SessionRef(session_id=session_id), timeout_s=VSCODE_TIMEOUT_S)
        assert isinstance(info, VscodeInfo)
        return info

    async def drain_worker(self, worker_id: str, *, undo: bool = False) -> WorkerInfo:
        """No new sessions on this worker (``undo`` re-opens it); its sessions carry on."""
        reply = await self.request("drain", WorkerRef(worker_id=worker_id, undo=undo))
        assert isinstance(reply, WorkerList)
        return reply.workers[0]

    async def list_sessions(self) -> list[SessionInfo]:
        reply = await self.request("list")
        assert isinstance(reply, SessionList)
        return reply.sessions

    async def workers(self) -> list[WorkerInfo]:
        reply = await self.request("workers")
        assert isinstance(reply, WorkerList)
        return reply.workers

    async def aclose(self) -> None:
        if self._owns and not self._nc.is_closed:
            await self._nc.drain()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Session:
    """One sandbox. Observations are routed to the call that waits for them by ``cause``."""

    def __init__(self, client: Client, info: SessionInfo) -> None:
        self._client = client
        self.info = info
        self.session_id = info.session_id
        self._waiters: dict[str, asyncio.Queue[AnyObservation]] = {}
        self._subs: list[Any] = []
        self.status = info.status

    @classmethod
    async def open(cls, client: Client, info: SessionInfo) -> Session:
        session = cls(client, info)
        nc, subjects = client.nats, client.subjects
        session._subs.append(await nc.subscribe(subjects.observations(info.session_id), cb=session._on_obs))
        session._subs.append(await nc.subscribe(subjects.status(info.session_id), cb=session._on_status))
        return session

    async def _on_obs(self, msg: Msg) -> None:
        try:
            obs = decode_observation(msg.data, json=wants_json(msg.headers))
        except msgspec.DecodeError:
            return
        queue = self._waiters.get(obs.cause or "")
        if queue is not None:
            queue.put_nowait(obs)

    async def _on_status(self, msg: Msg) -> None:
        try:
            info = decode_reply(msg.data, json=wants_json(msg.headers))
        except msgspec.DecodeError:
            return
        if not isinstance(info, SessionInfo):
            return
        self.status = info.status
        # `lost` may still turn into `recovered` (a restarted worker re-adopts the sandbox), and the
        # controller answers every pending action if it does not: only `closed` ends the waits here.
        # The worker or the controller answers what the session held as it closes; an answer may
        # still be on its way when the status arrives, so only what is unanswered a moment later
        # gets an error made here.
        if info.status == "closed":
            reason = info.reason or "the session was closed"
            asyncio.get_running_loop().call_later(CLOSED_GRACE_S, self._fail_waiters, set(self._waiters), reason)

    def _fail_waiters(self, causes: set[str], reason: str) -> None:
        for cause in causes:
            queue = self._waiters.get(cause)
            if queue is not None:
                queue.put_nowait(Error(id=new_id(), cause=cause, session_id=self.session_id,
                                       code=codes.UNKNOWN_SESSION, message=reason))

    async def stream(self, action: AnyAction, *, wait_s: float | None = None) -> AsyncIterator[AnyObservation]:
        """Publish one action; yield its chunks (and a ``confirmation_required`` if a gate holds it
        for a ``confirm``), then its final observation (``rejected`` if it did not run). An action without an ``id`` gets a fresh one."""
        if not action.id:
            action = msgspec.structs.replace(action, id=new_id())
        queue: asyncio.Queue[AnyObservation] = asyncio.Queue()
        self._waiters[action.id] = queue
        try:
            early = await self._publish(action)
            if early is not None:
                yield early
                return
            while True:
                obs = await asyncio.wait_for(queue.get(), wait_s) if wait_s else await queue.get()
                yield obs
                if obs.__struct_config__.tag not in INTERIM_KINDS:
                    return
        except asyncio.TimeoutError:
            yield Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.TIMEOUT,
                        message=f"no observation for action {action.id} within {wait_s} s")
        finally:
            self._waiters.pop(action.id, None)

    async def run(self, action: AnyAction, *, wait_s: float | None = None) -> AnyObservation:
        """Publish one action and wait for its final observation."""
        final: AnyObservation | None = None
        async for obs in self.stream(action, wait_s=wait_s):
            final = obs
        assert final is not None
        return final

    async def confirm(self, action_id: str, *, approve: bool = True, by: str = "") -> ConfirmResult | Error:
        """Release (or, with ``approve=False``, reject) an action held for confirmation
        (``confirmation_required``); ``by`` names the approver in the held action's answer."""
        obs = await self.run(Confirm(id=new_id(), action_id=action_id, approve=approve, by=by))
        assert isinstance(obs, (ConfirmResult, Error))
        return obs

    async def cmd(self, command: str, **fields: Any) -> CmdOutput | Error:
        """Shorthand for ``run(CmdRun(id=new_id(), command=command, ...))``."""
        obs = await self.run(CmdRun(id=new_id(), command=command, **fields))
        assert isinstance(obs, (CmdOutput, Error))
        return obs

    async def ipython(self, code: str, **fields: Any) -> IPythonOutput | Error:
        """Shorthand for an ``ipython_run`` (``kernel``, ``timeout_s``, ``restart`` as keywords);
        the session must have asked for the ``jupyter`` plugin."""
        obs = await self.run(IPythonRun(id=new_id(), code=code, **fields))
        assert isinstance(obs, (IPythonOutput, Error))
        return obs

    async def browse(self, url: str, **fields: Any) -> BrowserOutput | Error:
        """Shorthand for a ``browse_url`` (``return_axtree``, ``screenshot``, ``timeout_s`` as
        keywords); the session must have asked for the ``browser`` plugin."""
        obs = await self.run(BrowseUrl(id=new_id(), url=url, **fields))
        assert isinstance(obs, (BrowserOutput, Error))
        return obs

    async def browse_interactive(self, browser_actions: str, **fields: Any) -> BrowserOutput | Error:
        """Shorthand for a ``browse_interactive``: BrowserGym action calls, one per line."""
        obs = await self.run(BrowseInteractive(id=new_id(), browser_actions=browser_actions, **fields))
        assert isinstance(obs, (BrowserOutput, Error))
        return obs

    async def expose(self, port: int) -> PortInfo:
        return await self._client.expose(self.session_id, port)

    async def unexpose(self, port: int) -> PortInfo:
        return await self._client.unexpose(self.session_id, port)

    async def vscode(self) -> VscodeInfo:
        return await self._client.vscode(self.session_id)

    async def read_file(self, path: str, **fields: Any) -> FileContent | Error:
        """Shorthand for a ``file_read`` (``start_line``, ``end_line``, ``encoding`` as keywords)."""
        obs = await self.run(FileRead(id=new_id(), path=path, **fields))
        assert isinstance(obs, (FileContent, Error))
        return obs

    async def write_file(self, path: str, content: str, **fields: Any) -> FileWritten | Error:
        """Shorthand for a ``file_write`` (byte-exact, atomic, parents created)."""
        obs = await self.run(FileWrite(id=new_id(), path=path, content=content, **fields))
        assert isinstance(obs, (FileWritten, Error))
        return obs

    async def edit(self, command: str, path: str, **fields: Any) -> FileEdited | Error:
        """Shorthand for a ``file_edit``: ``await session.edit("str_replace", path, old_str=..., new_str=...)``."""
        obs = await self.run(FileEdit(id=new_id(), command=command, path=path, **fields))  # type: ignore[arg-type]
        assert isinstance(obs, (FileEdited, Error))
        return obs

    async def mcp_list(self, server: str | None = None, **fields: Any) -> McpTools | Error:
        """The tools of the session's MCP servers (``mcp_tools``), or of one of them."""
        obs = await self.run(McpList(id=new_id(), server=server, **fields))
        assert isinstance(obs, (McpTools, Error))
        return obs

    async def mcp_call(self, tool: str, arguments: dict[str, Any] | None = None, server: str | None = None,
                       **fields: Any) -> McpResult | Error:
        """Call an MCP tool (``server`` only when two servers offer ``tool``); ``timeout_s`` as a keyword."""
        obs = await self.run(McpCall(id=new_id(), tool=tool, arguments=arguments or {}, server=server, **fields))
        assert isinstance(obs, (McpResult, Error))
        return obs

    async def _publish(self, action: AnyAction) -> AnyObservation | None:
        """Publish durably; returns an observation when the answer is already known."""
        client = self._client
        kind = action.__struct_config__.tag
        if kind == "confirm" and client.role == "client":  # the broker would drop it: say so at once
            return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.NOT_PERMITTED,
                         message="a tenant's client may not confirm held actions; its approver may "
                                 "(`corral tenant add NAME --role approver`)")
        subject = client.subjects.action(self.session_id, kind)
        try:
            ack = await client._js.publish(subject, encode(action), headers={"Nats-Msg-Id": action.id})
        except nats.errors.MaxPayloadError as exc:
            return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.PAYLOAD_TOO_LARGE,
                         message=f"action is larger than the broker's max payload ({exc}); write big files in parts")
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError, nats.errors.TimeoutError) as exc:
            return Error(id=new_id(), cause=action.id, session_id=self.session_id, code=codes.WORKER_UNAVAILABLE,
                         message=f"the action stream did not accept the action: {exc!r}")
        if ack.duplicate:
            return await self._lookup(action.id)
        return None

    async def _lookup(self, action_id: str) -> AnyObservation | None:
        """A repeated id: ask the owning worker for the stored observation (None: still running)."""
        nc = self._client.nats
        try:
            msg = await nc.request(self._client.subjects.lookup(self.session_id), action_id.encode(), timeout=5)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return Error(id=new_id(), cause=action_id, session_id=self.session_id, code=codes.UNKNOWN_SESSION,
                         message=f"no worker serves session {self.session_id} to look up action {action_id}")
        if not msg.data:
            return None
        return decode_observation(msg.data, json=wants_json(msg.headers))

    async def observations(self, *, since: int = 0, follow: bool = True,
                           idle_s: float = 0.5) -> AsyncIterator[tuple[int, AnyObservation]]:
        """Every stored observation of this session as (stream sequence, observation), oldest first.

        A client that reconnects passes the last sequence it saw + 1 as ``since`` and misses
        nothing. With ``follow`` it keeps yielding live ones; without, it stops once caught up.
        """
        subjects = self._client.subjects
        if subjects.tenant:
            raise RequestError(codes.NOT_PERMITTED, (
                "replaying stored observations needs the JetStream API, which a tenant's users do not get "
                "(it cannot be limited to one tenant's messages); watch live with run()/stream(), or replay "
                "with the operator's admin credentials"))
        subject = subjects.observations(self.session_id)
        async for msg in replay(self._client.nats, subject, since=since, follow=follow, idle_s=idle_s):
            try:
                obs = decode_observation(msg.data, json=wants_json(msg.headers))
            except msgspec.DecodeError:
                continue
            yield msg.metadata.sequence.stream, obs

    async def close(self) -> SessionInfo:
        info = await self._client.close_session(self.session_id)
        await self.detach()
        return info

    async def detach(self) -> None:
        await unsubscribe_all(self._subs)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close()
        except (RequestError, ConnectionLost):
            await self.detach()
