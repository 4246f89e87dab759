"""Processes whose stdin/stdout are carried over the executor channel (stdio MCP servers).

``GET /v1/spawn`` with ``Upgrade: corral-stdio`` and a short JSON body (``SpawnRequest``) starts
the process as the sandbox's user (the executor's own), in the session's workdir, with the
session's environment plus the request's, in a process group of its own. The executor answers
``101 Switching Protocols`` and from then on the connection *is* the process's stdio: bytes from
the worker go to its stdin, its stdout comes back, unframed. Its stderr is kept in a bounded ring,
readable afterwards with ``GET /v1/spawn/<id>/stderr`` (so a server that died on start can say
why). When the connection closes, the process's stdin is closed and, after a short grace, its
whole group is killed; when the process closes its stdout (it exited), the connection is closed
once its stderr has been read to the end. The executor kills every group it started when it stops.

The body is bounded (``MAX_SPAWN_BODY``); a command that cannot be started is a 422 with the
reason, and the connection closes (a spawn connection is never reused for another request).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import contextlib
import os
import shutil
import signal
import sys
from typing import Callable

import msgspec

from protocol import new_id

from . import _http

UPGRADE = "corral-stdio"
MAX_SPAWN_BODY = 64 * 1024
STDERR_KEPT_BYTES = 32 * 1024
"""The tail of each process's stderr kept in memory."""
SPAWNS_KEPT = 64
"""Finished processes whose stderr tail is still readable."""
STDIN_CLOSE_GRACE_S = 2.0
"""After the connection closes: how long the process may take to exit on its own."""
STDERR_DRAIN_S = 1.0
PIPE_READ = 64 * 1024


class SpawnRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    argv: list[str]
    env: dict[str, str] = {}
    cwd: str | None = None
    """Default: the session's workdir (the main shell's current directory)."""


class _Spawned:
    """One process: its stderr ring, filled by a task until the process closes it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr = bytearray()
        self.stderr_done = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while data := await self.proc.stderr.read(PIPE_READ):
            self.stderr += data
            if len(self.stderr) > STDERR_KEPT_BYTES:
                del self.stderr[: len(self.stderr) - STDERR_KEPT_BYTES]

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class Spawner:
    """The spawned processes of one executor, and the stderr tails of the last ones."""

    def __init__(self, env: Callable[[], dict[str, str]], cwd: Callable[[], str]) -> None:
        self._env = env
        self._cwd = cwd
        self._running: dict[str, _Spawned] = {}
        self._done: OrderedDict[str, bytes] = OrderedDict()

    def stderr_tail(self, spawn_id: str) -> bytes | None:
        running = self._running.get(spawn_id)
        return bytes(running.stderr) if running is not None else self._done.get(spawn_id)

    async def serve(self, request: _http.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one ``/v1/spawn`` request (authorised already); the connection ends with it."""
        if request.path != "/v1/spawn":
            spawn_id = request.path.removeprefix("/v1/spawn/").removesuffix("/stderr")
            tail = self.stderr_tail(spawn_id) if request.path.endswith("/stderr") else None
            if tail is None:
                return await _reply(writer, 404, "Not Found", b"no such spawned process")
            return await _reply(writer, 200, "OK", tail, "text/plain; charset=utf-8")
        if request.headers.get("upgrade", "").lower() != UPGRADE or len(request.body) > MAX_SPAWN_BODY:
            return await _reply(writer, 400, "Bad Request", b"GET /v1/spawn needs Upgrade: corral-stdio and a short body")
        try:
            spec = msgspec.json.decode(request.body, type=SpawnRequest)
            spawned = await self._start(spec)
        except (msgspec.DecodeError, ValueError) as exc:
            return await _reply(writer, 400, "Bad Request", str(exc).encode())
        except OSError as exc:
            return await _reply(writer, 422, "Unprocessable Entity", f"cannot start {spec.argv[0]!r}: {exc}".encode())
        spawn_id = new_id()
        self._running[spawn_id] = spawned
        try:
            writer.write((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE}\r\nConnection: Upgrade\r\n"
                          f"X-Corral-Spawn-Id: {spawn_id}\r\nX-Corral-Pid: {spawned.proc.pid}\r\n\r\n").encode())
            await writer.drain()
            await _carry(spawned, reader, writer)
        finally:
            spawned.kill()
            await spawned.proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(spawned.stderr_done), STDERR_DRAIN_S)
            spawned.stderr_done.cancel()
            self._running.pop(spawn_id, None)
            self._done[spawn_id] = bytes(spawned.stderr)
            while len(self._done) > SPAWNS_KEPT:
                self._done.popitem(last=False)

    async def _start(self, spec: SpawnRequest) -> _Spawned:
        if not spec.argv or not spec.argv[0]:
            raise ValueError("argv must name a command")
        env = {**self._env(), **spec.env}
        program = _resolve(spec.argv[0], env.get("PATH", os.defpath))
        proc = await asyncio.create_subprocess_exec(
            *program, *spec.argv[1:], cwd=spec.cwd or self._cwd(), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=PIPE_READ)
        return _Spawned(proc)

    async def aclose(self) -> None:
        for spawned in list(self._running.values()):
            spawned.kill()


def _resolve(command: str, path: str) -> list[str]:
    """The argv head for ``command``: a bare name is looked up on the session's PATH, then beside
    the executor's interpreter (where corral's venv and the image variant ``mcp`` install the
    servers' console scripts), then among the console scripts of the distributions this
    interpreter can import (a bubblewrap sandbox carries the servers' packages, not their scripts)."""
    if "/" in command:
        return [command]
    found = shutil.which(command, path=path) or shutil.which(command, path=os.path.dirname(sys.executable))
    if found is not None:
        return [found]
    import importlib.metadata  # here, not at the executor's start: only a spawn of such a name pays for it

    if importlib.metadata.entry_points(group="console_scripts", name=command):
        return _script_argv(command)
    raise FileNotFoundError(f"{command!r} is not on the sandbox's PATH ({path}), nor beside {sys.executable}, "
                            "nor a console script of a distribution it can import")


def _script_argv(name: str) -> list[str]:
    """Run console script ``name`` by its entry point, as the script pip would have written does.
    An executor isolated from site-packages (``-I -S``, a bubblewrap sandbox's runtime copy) gives
    the server the same isolation and the runtime directory, which carries the server's packages."""
    head, flags = "import sys, importlib.metadata as m; ", []
    if sys.flags.isolated:
        runtime = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        head, flags = head + f"sys.path.insert(0, {runtime!r}); ", ["-I", "-S"]
    code = head + ("name = sys.argv.pop(1); sys.argv[0] = name; "
                   "sys.exit(next(iter(m.entry_points(group='console_scripts', name=name))).load()())")
    return [sys.executable, *flags, "-c", code, name]


async def _carry(spawned: _Spawned, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pipe the connection to the process and back until either side ends."""
    proc = spawned.proc
    inbound = asyncio.ensure_future(_to_stdin(reader, proc))
    outbound = asyncio.ensure_future(_from_stdout(proc, writer))
    try:
        await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        if inbound.done():  # the worker hung up: let the process finish on its own for a moment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), STDIN_CLOSE_GRACE_S)
        else:  # the process closed its stdout: its stderr says why, before the worker hears of it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(spawned.stderr_done), STDERR_DRAIN_S)
    finally:
        inbound.cancel()
        outbound.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)
        writer.close()


async def _to_stdin(reader: asyncio.StreamReader, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    try:
        while data := await reader.read(PIPE_READ):
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        proc.stdin.close()


async def _from_stdout(proc: asyncio.subprocess.Process, writer: asyncio.StreamWriter) -> None:
    assert proc.stdout is not None
    with contextlib.suppress(ConnectionError, OSError):
        while data := await proc.stdout.read(PIPE_READ):
            writer.write(data)
            await writer.drain()


async def _reply(writer: asyncio.StreamWriter, status: int, reason: str, body: bytes,
                 content_type: str = "text/plain; charset=utf-8") -> None:
    writer.write(_http.response_head(status, reason, content_type, length=len(body)) + body)
    await writer.drain()
