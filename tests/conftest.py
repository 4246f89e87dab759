"""Shared fixtures: a real nats-server per test (free port, JetStream in a temp dir), and real deployments."""

from __future__ import annotations

import os

import pytest
import structlog

from actors.embedded import EmbeddedNats
from cli.up import Deployment, UpConfig
from protocol import Client


@pytest.fixture
async def nats_server(tmp_path):
    async with EmbeddedNats(str(tmp_path / "nats")) as server:
        yield server


@pytest.fixture
async def deployment(nats_server, tmp_path):
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="local", audit=False,
                      allowed_mounts=[str(tmp_path)])
    async with Deployment(config) as dep:
        yield dep


@pytest.fixture
async def client(deployment):
    async with await Client.connect(deployment.url) as c:
        yield c


@pytest.fixture
async def session(client):
    async with await client.create_session() as s:
        yield s


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """A CLI command run in-process (click's CliRunner) configures logging for the process, e.g. at
    warning level; the next test's ``capture_logs()`` would see nothing. Every test starts from defaults."""
    yield
    structlog.reset_defaults()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CORRAL_STRICT_SKIPS=1) a test skipped for a missing engine or tool is a failure, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CORRAL_STRICT_SKIPS"):
        reason = str(report.longrepr).lower()
        if any(word in reason for word in ("docker", "engine", "bwrap", "bubblewrap", "chromium", "compose", "code-server", "playwright", "mcp", "invariant", "kubernetes", "cluster")):
            report.outcome = "failed"
