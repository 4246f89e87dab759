"""The executor: one per sandbox, serving actions over HTTP on a Unix socket or TCP.

Routes:
  GET  /v1/health   -> JSON {"ok": true, "session_id", "pid", "started_at"}
  POST /v1/action   body: one action (MessagePack, or JSON with Content-Type application/json)
                    -> chunked response, each chunk one observation: CmdChunk* then the final one.
  GET  /v1/spawn    Upgrade: corral-stdio -> 101, then the connection is a process's stdin/stdout
  GET  /v1/spawn/<id>/stderr -> the tail of that process's stderr (``_spawn``)
  GET  /v1/tunnel/<port>  with ``Upgrade: corral-tunnel``: 101, then a raw byte pipe to
                    127.0.0.1:<port> inside the sandbox (400 bad port, 502 nothing listens); see _tunnel.
  POST /v1/vscode   body {} -> JSON {"port", "workdir"}: the session's code-server, started if needed
                    (409: the session has no vscode plugin; 422: not installed here; 500: it failed)
  POST /v1/release  body {"session_id"} -> health: end that session and become claimable again
                    (409: it serves another session); a remote executor serves sessions one after another
Every request carries ``Authorization: Bearer <key>``; the key is per session.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import hashlib
import hmac
import logging
import os
import re
import shlex
import shutil
import socket
import ssl
import time
from typing import Callable
from urllib.parse import unquote

import msgspec

from protocol import (
    ActionDecodeError,
    AnyAction,
    AnyObservation,
    CmdChunk,
    CmdRun,
    Error,
    UnknownName,
    codes,
    decode_action,
    encode,
    new_id,
    valid_id,
)

from . import _http, _tunnel
from ._channel import Claim, Health, Release
from ._offload import offload
from ._shell import ShellManager, base_env
from ._spawn import Spawner
from .plugins import PluginSet, SandboxContext, resolve
from ._vscode import VscodeRefused, serve_vscode  # isort: skip  (after .plugins, which registers it)

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
RESULTS_KEPT = 10_000
"""Final observations kept to answer a repeated action id (also across worker restarts)..."""
RESULTS_MAX_BYTES = 8 * 1024 * 1024
"""... and their encoded size at most: oldest evicted first, the newest one always kept."""
JSON = "application/json"


class ExecutorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str
    workdir: str
    output_dir: str
    session_id: str = ""
    """Empty: start unclaimed (a warm-pool sandbox) and wait for POST /v1/claim."""
    socket_path: str | None = None
    listen_fd: int | None = None
    """An inherited, already listening Unix socket to serve on (the worker bound it where the sandbox cannot reach)."""
    host: str = "127.0.0.1"
    port: int | None = None
    env: dict[str, str] = {}
    default_timeout_s: float | None = None
    default_soft_timeout_s: float | None = None
    max_read_bytes: int = 900_000
    tls_cert: str | None = None
    """With ``tls_key``: serve TCP over TLS with this certificate chain (PEM)."""
    tls_key: str | None = None
    session_dirs: bool = False
    """Give every claim fresh directories of its own, ``<workdir>/<session>`` (unless the claim names a
    workdir) and ``<output_dir>/<session>``, removed when the session is released. ``corral-executor
    --listen`` (an executor serving sessions one after another) turns it on."""


class AlreadyClaimed(Exception):
    pass


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _dir_name(session_id: str) -> str:
    """A session's directory name: its id when that is a plain name, else a digest of it."""
    return session_id if _PLAIN_NAME.fullmatch(session_id) else hashlib.sha256(session_id.encode()).hexdigest()[:24]


class Executor:
    """Dispatches actions to the shells, the file operations and the editor."""

    def __init__(self, config: ExecutorConfig) -> None:
        self._config = config
        self._session_id = ""
        self._shells: ShellManager | None = None
        self._warm: ShellManager | None = None
        self._plugins: PluginSet | None = None
        self._started_at = time.time()
        self._results = _Results(RESULTS_KEPT, RESULTS_MAX_BYTES)
        self._running: dict[str, asyncio.Future[AnyObservation]] = {}
        self._session_dirs: tuple[str, ...] = ()
        self._lock = asyncio.Lock()
        """Claims and releases one at a time: a claim never sees a half-released executor."""

    async def start(self) -> None:
        config = self._config
        offload.start()  # file operations must not need a new thread later (a fork bomb leaves none)
        if config.session_id:
            await self.claim(Claim(session_id=config.session_id, env=config.env, workdir=config.workdir,
                                   default_timeout_s=config.default_timeout_s,
                                   default_soft_timeout_s=config.default_soft_timeout_s))
        else:
            await self._start_warm()

    async def _start_warm(self) -> None:
        """Unclaimed (a warm-pool sandbox): start the main shell now, so a claim only has to
        type `cd` and `export` into it instead of paying for a bash start."""
        config = self._config
        os.makedirs(config.workdir, exist_ok=True)
        self._warm = ShellManager(session_id="", workdir=config.workdir, env=config.env,
                                  output_dir=config.output_dir)
        await self._warm.start()

    async def claim(self, claim: Claim) -> None:
        """Become the sandbox of one session: its env, its workdir, its main shell."""
        async with self._lock:
            await self._claim(claim)

    async def release(self, session_id: str) -> bool:
        """End the session this executor serves and wait unclaimed for the next one; False if
        it served none. Its plugins and shells are closed (their process groups killed), its
        stored answers forgotten, its session directories removed, and a fresh main shell
        started. Processes that left their shell's process group (``setsid``, daemons) are not
        found: an executor on a machine of its own is only as fresh as that machine."""
        async with self._lock:
            if not self._session_id:
                return False
            if session_id != self._session_id:
                raise AlreadyClaimed(f"this executor serves session {self._session_id}, not {session_id}")
            plugins, shells, dirs = self._plugins, self._shells, self._session_dirs
            self._plugins, self._shells, self._session_id, self._session_dirs = None, None, "", ()
            self._results = _Results(RESULTS_KEPT, RESULTS_MAX_BYTES)
            if plugins is not None:
                await plugins.aclose()
            if shells is not None:
                await shells.aclose()
            for path in dirs:
                await offload.run(shutil.rmtree, path, True)
            await self._start_warm()
            return True

    async def _claim(self, claim: Claim) -> None:
        if self._shells is not None:
            raise AlreadyClaimed(f"this executor already serves session {self._session_id}")
        plugins = resolve(claim.plugins)  # UnknownName before anything is bound
        workdir = claim.workdir or self._config.workdir
        output_dir = self._config.output_dir
        dirs: tuple[str, ...] = ()
        if self._config.session_dirs:
            name = _dir_name(claim.session_id)
            output_dir = os.path.join(output_dir, name)
            dirs = (output_dir,)
            if not claim.workdir:
                workdir = os.path.join(self._config.workdir, name)
                dirs += (workdir,)
            os.makedirs(output_dir, exist_ok=True)
        os.makedirs(workdir, exist_ok=True)
        env = {**self._config.env, **claim.env}
        shells, self._warm = self._warm, None
        if shells is None or not await _adopt_warm_shells(shells, claim, workdir, env):
            if shells is not None:
                await shells.aclose()
            shells = ShellManager(session_id=claim.session_id, workdir=workdir, env=env,
                                  output_dir=output_dir)
            await shells.start()
        shells.session_id = claim.session_id
        shells.output_dir = output_dir
        shells.default_timeout_s = claim.default_timeout_s
        shells.default_soft_timeout_s = claim.default_soft_timeout_s
        self._session_id = claim.session_id
        self._shells = shells
        self._session_dirs = dirs
        context = SandboxContext(session_id=claim.session_id, workdir=workdir, output_dir=output_dir,
                                 max_read_bytes=self._config.max_read_bytes, shells=shells, plugins=plugins,
                                 editor_history_dir=_history_dir(output_dir, plugins))
        self._plugins = PluginSet(context, list(plugins))

    async def aclose(self) -> None:
        if self._plugins is not None:
            await self._plugins.aclose()
        for shells in (self._shells, self._warm):
            if shells is not None:
                await shells.aclose()

    def result(self, action_id: str) -> AnyObservation | None:
        return self._results.get(action_id)

    def statistics(self) -> dict[str, int]:
        """Sizes of what the executor holds: stored answers (count, encoded bytes, cap), running actions."""
        return {"results": len(self._results), "results_bytes": self._results.nbytes,
                "results_max_bytes": self._results.max_bytes, "running": len(self._running)}

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def plugins(self) -> PluginSet | None:
        """The session's plugins (None while unclaimed)."""
        return self._plugins

    def spawn_env(self) -> dict[str, str]:
        """The environment a spawned process starts with: the session's shells' own."""
        return dict(self._shells.env) if self._shells is not None else base_env(self._config.env)

    def spawn_cwd(self) -> str:
        return self._shells.cwd() if self._shells is not None else self._config.workdir

    def health(self) -> Health:
        return Health(session_id=self._session_id, pid=os.getpid(), started_at=self._started_at,
                      workdir=self._shells.workdir if self._shells is not None else "")

    async def execute(self, action: AnyAction, emit: Callable[[CmdChunk], None]) -> AnyObservation:
        """Run an action at most once: a repeated id gets the stored (or still coming) answer.

        The executor outlives its worker, so this is what keeps an action that was in flight
        when a worker died from running twice when the restarted worker receives it again.
        """
        done = self._results.get(action.id)
        if done is not None:
            return done
        running = self._running.get(action.id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[AnyObservation] = asyncio.get_running_loop().create_future()
        self._running[action.id] = future
        try:
            result = await self._dispatch(action, emit)
            size = len(encode(result))
        except Exception as exc:  # a bug, or a failure we did not foresee: still an answer
            log.error("action_failed", exc_info=exc)
            code, message = _failure(exc)
            result = Error(id=new_id(), cause=action.id, session_id=self._session_id, code=code,
                           message=f"the executor failed on {action.__struct_config__.tag}: {message}")
            size = len(encode(result))
        except BaseException as exc:  # cancelled: waiters for the same id re-raise it
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._running.pop(action.id, None)
        future.set_result(result)
        self._results.add(action.id, result, size)
        return result

    async def _dispatch(self, action: AnyAction, emit: Callable[[CmdChunk], None]) -> AnyObservation:
        sid = self._session_id
        if self._plugins is None:
            return Error(id=new_id(), cause=action.id, session_id=sid, code=codes.SANDBOX_FAILED,
                         message="this sandbox has not been claimed by a session yet")
        kind = action.__struct_config__.tag
        plugin = await self._plugins.plugin_for(kind)
        if plugin is None:
            return Error(id=new_id(), cause=action.id, session_id=sid, code=codes.UNSUPPORTED,
                         message=f"no plugin of this sandbox serves {kind!r} actions")
        return await plugin.handle(action, emit)


def _history_dir(output_dir: str, plugins: tuple[str, ...]) -> str:
    """Where edits keep their undo history: on disk only when another process of the sandbox
    edits too (the skills' ``file_editor`` in a kernel), else in the executor's memory."""
    return os.path.join(output_dir, ".editor-history") if "agent_skills" in plugins else ""


def _failure(exc: Exception) -> tuple[str, str]:
    """A stable code for what went wrong: the sandbox out of resources, or a bug of ours."""
    if isinstance(exc, MemoryError):
        return codes.SANDBOX_FAILED, "the sandbox ran out of memory"
    if isinstance(exc, BlockingIOError) or (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)):
        return codes.SANDBOX_FAILED, f"the sandbox is out of processes or threads (a fork bomb?): {exc}"
    return codes.INTERNAL, str(exc) or repr(exc)


class _Results:
    """Final observations by action id, bounded by count and by encoded bytes, oldest evicted first.

    The newest answer is kept even when it alone is over the byte cap, so an action just answered
    can always be asked for again.
    """

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, tuple[AnyObservation, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, action_id: str) -> AnyObservation | None:
        entry = self._entries.get(action_id)
        return entry[0] if entry is not None else None

    def add(self, action_id: str, obs: AnyObservation, size: int) -> None:
        old = self._entries.pop(action_id, None)
        if old is not None:
            self.nbytes -= old[1]
        self._entries[action_id] = (obs, size)
        self.nbytes += size
        while len(self._entries) > 1 and (len(self._entries) > self.max_count or self.nbytes > self.max_bytes):
            _, (_, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted


async def _adopt_warm_shells(shells: ShellManager, claim: Claim, workdir: str, env: dict[str, str]) -> bool:
    """Give a prestarted main shell the session's directory and environment; False if it fails."""
    if not all(name.isidentifier() for name in claim.env):
        return False  # `export` cannot set it; a fresh shell gets it through its environment
    shells.workdir = workdir
    shells.env = base_env(env)  # for shells started later under other names
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in claim.env.items())
    command = f"cd -- {shlex.quote(workdir)}" + (f" && export {exports}" if exports else "")
    result = await shells.run(CmdRun(id="claim-" + new_id(), command=command, timeout_s=10))
    return result.status == "completed" and result.exit_code == 0


class ExecutorServer:
    """HTTP/1.1 front of an Executor; keep-alive connections, one request at a time each."""

    def __init__(self, executor: Executor, config: ExecutorConfig) -> None:
        self._executor = executor
        self._config = config
        self._key = f"Bearer {config.key}".encode()
        self._server: asyncio.AbstractServer | None = None
        self._spawner = Spawner(executor.spawn_env, executor.spawn_cwd)

    async def start(self) -> None:
        if self._config.listen_fd is not None:
            sock = socket.socket(fileno=self._config.listen_fd)
            sock.set_inheritable(False)  # the sandbox's shells need not hold it
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=_http.MAX_HEAD)
        elif self._config.socket_path:
            path = self._config.socket_path
            if os.path.exists(path):
                os.unlink(path)
            self._server = await asyncio.start_unix_server(self._serve, path, limit=_http.MAX_HEAD)
            os.chmod(path, 0o600)
        else:
            self._server = await asyncio.start_server(
                self._serve, self._config.host, self._config.port or 0, limit=_http.MAX_HEAD, ssl=self._tls(),
            )

    def _tls(self) -> ssl.SSLContext | None:
        """The server's TLS context when it has a certificate (TCP only): TLS 1.2 at least."""
        if not self._config.tls_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._config.tls_cert, self._config.tls_key)
        return context

    @property
    def port(self) -> int | None:
        if self._server is None or self._config.socket_path or self._config.listen_fd is not None:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def aclose(self) -> None:
        await self._spawner.aclose()
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _http.tune_socket(writer)
        try:
            while True:
                request = await _http.read_request(reader)
                if request is None:
                    break
                if request.path.startswith("/v1/spawn"):  # the connection may become a process's stdio
                    if await self._spawn(request, reader, writer):
                        break
                    continue
                if request.method == "GET" and request.path.startswith(_tunnel.PREFIX) and self._authorized(request):
                    await _tunnel.serve(request.path, request.headers, reader, writer)
                    break  # piped until both ends closed, or refused (the connection ends either way)
                await self._route(request, writer)
        except (_http.HttpError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _authorized(self, request: _http.Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), self._key)

    async def _route(self, request: _http.Request, writer: asyncio.StreamWriter) -> None:
        if not self._authorized(request):
            return await self._reply(writer, 401, "Unauthorized", {"error": "missing or wrong session key"})
        if request.method == "GET" and request.path == "/v1/health":
            return await self._reply(writer, 200, "OK", self._executor.health())
        if request.method == "POST" and request.path == "/v1/action":
            return await self._action(request, writer)
        if request.method == "POST" and request.path == "/v1/claim":
            return await self._claim(request, writer)
        if request.method == "POST" and request.path == "/v1/release":
            return await self._release(request, writer)
        if request.method == "POST" and request.path == "/v1/vscode":
            return await self._vscode(writer)
        if request.method == "GET" and request.path.startswith("/v1/result/"):
            action_id = unquote(request.path.removeprefix("/v1/result/"), errors="replace")
            if not valid_id(action_id):
                return await self._reply(writer, 400, "Bad Request", {"error": "not a valid action id"})
            return await self._result(action_id, writer)
        await self._reply(writer, 404, "Not Found", {"error": f"no route {request.method} {request.path}"})

    async def _spawn(self, request: _http.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve a ``/v1/spawn`` route; True when the connection is done with (it was upgraded)."""
        if not self._authorized(request):
            await self._reply(writer, 401, "Unauthorized", {"error": "missing or wrong session key"})
            return False
        await self._spawner.serve(request, reader, writer)
        return request.path == "/v1/spawn"

    async def _reply(self, writer: asyncio.StreamWriter, status: int, reason: str,
                     body: dict[str, object] | msgspec.Struct) -> None:
        data = msgspec.json.encode(body)
        writer.write(_http.response_head(status, reason, JSON, length=len(data)) + data)
        await writer.drain()

    async def _result(self, action_id: str, writer: asyncio.StreamWriter) -> None:
        """The stored final observation of an action id (404 while unknown or still running)."""
        done = self._executor.result(action_id)
        if done is None:
            return await self._reply(writer, 404, "Not Found", {"error": f"no answer stored for {action_id!r}"})
        data = encode(done)
        writer.write(_http.response_head(200, "OK", MSGPACK, length=len(data)) + data)
        await writer.drain()

    async def _vscode(self, writer: asyncio.StreamWriter) -> None:
        try:
            server = await serve_vscode(self._executor.plugins)
        except VscodeRefused as exc:
            return await self._reply(writer, exc.status, exc.reason, {"error": str(exc)})
        await self._reply(writer, 200, "OK", server)

    async def _claim(self, request: _http.Request, writer: asyncio.StreamWriter) -> None:
        try:
            await self._executor.claim(msgspec.json.decode(request.body, type=Claim))
        except msgspec.DecodeError as exc:
            return await self._reply(writer, 400, "Bad Request", {"error": f"bad claim: {exc}"})
        except AlreadyClaimed as exc:
            return await self._reply(writer, 409, "Conflict", {"error": str(exc)})
        except UnknownName as exc:
            return await self._reply(writer, 422, "Unprocessable Entity", {"error": f"unknown plugin: {exc}"})
        except OSError as exc:
            return await self._reply(writer, 422, "Unprocessable Entity", {"error": f"cannot prepare the workdir: {exc}"})
        await self._reply(writer, 200, "OK", self._executor.health())

    async def _release(self, request: _http.Request, writer: asyncio.StreamWriter) -> None:
        try:
            release = msgspec.json.decode(request.body, type=Release)
        except msgspec.DecodeError as exc:
            return await self._reply(writer, 400, "Bad Request", {"error": f"bad release: {exc}"})
        try:
            released = await self._executor.release(release.session_id)
        except AlreadyClaimed as exc:
            return await self._reply(writer, 409, "Conflict", {"error": str(exc)})
        if released:
            await self._spawner.aclose()  # the session's stdio processes (MCP servers) end with it
            log.info("session_released")
        await self._reply(writer, 200, "OK", self._executor.health())

    async def _action(self, request: _http.Request, writer: asyncio.StreamWriter) -> None:
        as_json = request.headers.get("content-type", "").startswith(JSON)
        sid = self._executor.session_id
        try:
            action = decode_action(request.body, json=as_json)
        except ActionDecodeError as exc:
            final: AnyObservation = Error(id=new_id(), cause=exc.action_id, session_id=sid, code=exc.code, message=exc.message)
            writer.write(_http.response_head(200, "OK", JSON if as_json else MSGPACK))
            writer.write(_http.chunk(encode(final, json=as_json)) + _http.LAST_CHUNK)
            await writer.drain()
            return

        writer.write(_http.response_head(200, "OK", JSON if as_json else MSGPACK))

        def emit(chunk: CmdChunk) -> None:
            writer.write(_http.chunk(encode(chunk, json=as_json)))

        final = await self._executor.execute(action, emit)  # answers every failure with an Error
        try:
            data = encode(final, json=as_json)
        except Exception as exc:  # e.g. a value JSON cannot carry
            data = encode(Error(id=new_id(), cause=action.id, session_id=sid, code=codes.INTERNAL,
                                message=f"the executor could not encode its answer: {exc}"), json=as_json)
        writer.write(_http.chunk(data) + _http.LAST_CHUNK)
        await writer.drain()
