"""What the security tests share: a session context for analyzers run outside a worker, and a
deployment (controller + one local worker) with a security config of the test's choosing."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest

from actors.controller import Controller, ControllerConfig
from executor.client import ExecutorClient
from protocol import Client, SessionSpec
from workers.backends import SandboxHandle
from workers.security import SecurityConfig
from workers.session import SessionContext
from workers.worker import Worker, WorkerConfig


def session_context(spec: SessionSpec = SessionSpec()) -> SessionContext:
    """A context for an analyzer asked directly (no sandbox behind it: analyzers never call it)."""
    handle = SandboxHandle(sandbox_id="t", session_id="t", worker_id="t", backend="local", key="k", workdir="/workspace")
    return SessionContext(session_id="t", spec=spec, handle=handle, client=ExecutorClient(key="k", port=9))


@pytest.fixture
def secured(nats_server, tmp_path):  # type: ignore[no-untyped-def]
    """``async with secured(SecurityConfig(...)) as client``: a controller and a local worker."""

    @contextlib.asynccontextmanager
    async def start(security: SecurityConfig = SecurityConfig()) -> AsyncIterator[Client]:
        ctl = Controller(ControllerConfig(nats_url=nats_server.url))
        await ctl.start()
        worker = Worker(WorkerConfig(nats_url=nats_server.url, worker_id="ws", base_dir=str(tmp_path / "w"), warm_pool=0,
                                     security=security))
        await worker.start()
        try:
            async with await Client.connect(nats_server.url) as client:
                yield client
        finally:
            await worker.aclose()
            await ctl.aclose()

    return start
