"""The ``vscode`` plugin: code-server (VS Code in a browser tab) on the session's workdir.

It answers no action kind: the worker starts it through ``POST /v1/vscode`` and forwards a host
port to it. code-server is a child of the executor, so it runs as the sandbox's user, under its
limits, in its own process group; it listens on the sandbox's loopback only, with ``--auth none``
(the worker's forwarder checks a per-session token before a byte reaches it). Its settings,
extensions, logs and config live in ``<output_dir>/vscode-server/``, never in the workspace.

Where code-server comes from: see ``_code_server`` (``$CORRAL_CODE_SERVER``, else the image's
``/opt/corral/code-server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
import re
import signal
import time

from protocol import AnyAction, AnyObservation

from ._channel import VscodeServer
from ._code_server import ENTRY, INSTALL_HINT, NODE, find_install
from ._jupyter import _exited
from .plugins import Emit, PluginSet, PluginUnavailable, SandboxPlugin

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
SERVER_DIR = "vscode-server"
_OWN_XDG = {"XDG_DATA_HOME": "data", "XDG_CACHE_HOME": "cache"}
"""code-server's XDG directories, under the server's own ``xdg/``."""
_LISTENING = re.compile(rb"HTTP server listening on https?://[^\s:]+:(\d+)")


class VscodePlugin(SandboxPlugin):
    """code-server on 127.0.0.1 of the sandbox, started by ``serve()`` (once; again if it died)."""

    variant = "vscode"

    async def start(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._port = 0
        self._lock = asyncio.Lock()
        self._dir = Path(self.ctx.output_dir, SERVER_DIR)

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        raise AssertionError("vscode answers no action kind")

    async def serve(self) -> VscodeServer:
        """The running server, started now if it is not running. Raises ``PluginUnavailable``
        (code-server not installed here) or ``VscodeStartFailed`` (with its log's tail)."""
        async with self._lock:
            if not await self._alive():
                await self._stop()
                await self._start_server()
            return VscodeServer(port=self._port, workdir=self.ctx.workdir)

    async def _alive(self) -> bool:
        """Is the server running and answering? (A zombie the loop has not reaped yet is dead.)"""
        proc = self._proc
        if proc is None or proc.returncode is not None or _exited(proc.pid):
            return False
        return (await healthz(self._port))[0] == 200

    async def _start_server(self) -> None:
        root = find_install()
        if root is None:
            raise PluginUnavailable("vscode", "code-server", "vscode", fix=INSTALL_HINT)
        for sub in ("data", "extensions", "xdg"):
            (self._dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_settings()
        log_path = self._dir / "code-server.log"
        started = time.monotonic()
        with open(log_path, "wb") as output:
            self._proc = await asyncio.create_subprocess_exec(
                str(root / NODE), str(root / ENTRY), *self._argv(), cwd=self.ctx.workdir, env=self._env(),
                stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
        try:
            self._port = await _wait_listening(self._proc, log_path, time.monotonic() + START_TIMEOUT_S)
            await _wait_healthy(self._proc, self._port, log_path, time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            await self._stop()
            raise
        log.info("vscode_started", extra={"session_id": self.ctx.session_id, "port": self._port,
                                          "pid": self._proc.pid, "start_s": round(time.monotonic() - started, 3)})

    def _argv(self) -> list[str]:
        return ["--bind-addr", "127.0.0.1:0", "--auth", "none", "--disable-telemetry", "--disable-update-check",
                "--disable-workspace-trust", "--config", str(self._dir / "config.yaml"),
                "--user-data-dir", str(self._dir / "data"), "--extensions-dir", str(self._dir / "extensions"),
                "--ignore-last-opened", self.ctx.workdir]

    def _env(self) -> dict[str, str]:
        """The session's shell environment, except that code-server's own state (XDG data and cache:
        coder-logs, a device id) goes to the server's directory, never the user's home (which is the
        workspace on bubblewrap). Its terminals get the session's values back (``_write_settings``)."""
        env = dict(self.ctx.shells.env)
        env.update({name: str(self._dir / "xdg" / sub) for name, sub in _OWN_XDG.items()})
        return env

    def _write_settings(self) -> None:
        """Default user settings, unless the user has some: no telemetry, and terminals that see the
        session's environment rather than the server's XDG directories."""
        path = self._dir / "data" / "User" / "settings.json"
        if path.exists():
            return
        session = self.ctx.shells.env
        terminal_env = {name: session.get(name) for name in _OWN_XDG}  # None (null) unsets it in terminals
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"telemetry.telemetryLevel": "off", "workbench.enableExperiments": False,
                                    "terminal.integrated.env.linux": terminal_env}, indent=2) + "\n")

    async def _stop(self) -> None:
        """Kill the server's process group (its extension host and helpers too, even when the
        server itself already died), then reap the server."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def aclose(self) -> None:
        await self._stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None


class VscodeStartFailed(Exception):
    """code-server did not come up; the message carries its log's tail."""


class VscodeRefused(Exception):
    """What ``POST /v1/vscode`` answers instead of a server: an HTTP status and why."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


async def serve_vscode(plugins: PluginSet | None) -> VscodeServer:
    """The session's code-server, started if needed (the route ``POST /v1/vscode``)."""
    if plugins is None:
        raise VscodeRefused(409, "Conflict", "this sandbox has not been claimed by a session yet")
    plugin = await plugins.named("vscode")
    if plugin is None:
        raise VscodeRefused(409, "Conflict", "this session did not ask for the vscode plugin; "
                            "create the session with plugins=['vscode'] to get VS Code")
    assert isinstance(plugin, VscodePlugin)
    try:
        return await plugin.serve()
    except PluginUnavailable as exc:
        raise VscodeRefused(422, "Unprocessable Entity", str(exc)) from None
    except (VscodeStartFailed, OSError) as exc:
        raise VscodeRefused(500, "Internal Server Error", f"code-server did not start: {exc}") from None


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_bytes()[-chars:].decode(errors="replace").strip() or "(its log is empty)"
    except OSError as exc:
        return f"(no log: {exc.strerror})"


async def _wait_listening(proc: asyncio.subprocess.Process, log_path: Path, deadline: float) -> int:
    """The port code-server says it listens on (it binds port 0: no race for a free port)."""
    delay = 0.02
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise VscodeStartFailed(f"code-server exited with {proc.returncode} while starting: {_tail(log_path)}")
        with contextlib.suppress(OSError):
            if match := _LISTENING.search(log_path.read_bytes()):
                return int(match.group(1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), delay)
        delay = min(delay * 2, 0.25)
    raise VscodeStartFailed(f"code-server did not listen within {START_TIMEOUT_S:g}s: {_tail(log_path)}")


async def _wait_healthy(proc: asyncio.subprocess.Process, port: int, log_path: Path, deadline: float) -> None:
    """Poll ``GET /healthz`` until it answers 200 (bounded)."""
    delay, last = 0.02, "no answer yet"
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise VscodeStartFailed(f"code-server exited with {proc.returncode} while starting: {_tail(log_path)}")
        status, last = await healthz(port)
        if status == 200:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise VscodeStartFailed(f"code-server's /healthz did not answer 200 within {START_TIMEOUT_S:g}s "
                            f"({last}): {_tail(log_path)}")


async def healthz(port: int, host: str = "127.0.0.1") -> tuple[int, str]:
    """(status, body or error) of code-server's ``/healthz`` (0 when it does not answer)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError) as exc:
        return 0, repr(exc)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(65536), 2.0)
    except (OSError, TimeoutError) as exc:
        return 0, repr(exc)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body.decode(errors="replace")[:200]
