"""OpenHands runtimes on a real corral deployment (local backend) for the tests modelled on
OpenHands' own ``tests/runtime/``. Runs only in the Python 3.12 venv that has ``openhands-ai``
(``./dev test`` runs this directory with ``.venv-openhands/bin/pytest``)."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("openhands.runtime.base", reason="openhands-ai is not installed (needs Python >= 3.12)")

from openhands.core.config import OpenHandsConfig  # noqa: E402
from openhands.events.stream import EventStream  # noqa: E402
from openhands.llm.llm_registry import LLMRegistry  # noqa: E402
from openhands.runtime.plugins import AgentSkillsRequirement, JupyterRequirement  # noqa: E402
from openhands.storage.memory import InMemoryFileStore  # noqa: E402
from openhands.utils.async_utils import call_async_from_sync  # noqa: E402

from corral_integrations.openhands import CorralRuntime  # noqa: E402


def load_runtime(nats_url: str, *, startup_env: dict[str, str] | None = None, jupyter: bool = False,
                 browser: bool = False, mcp_config: object = None,
                 **spec: object) -> CorralRuntime:
    """What OpenHands' ``create_runtime`` does, with ``CorralRuntime`` as the configured class."""
    config = OpenHandsConfig()
    config.enable_browser = browser
    if mcp_config is not None:
        config.mcp = mcp_config
    if startup_env:
        config.sandbox.runtime_startup_env_vars = startup_env
    sid = f"rt_{uuid.uuid4().hex[:8]}"
    plugins = [AgentSkillsRequirement(), JupyterRequirement()] if jupyter else []
    runtime = CorralRuntime(config=config, event_stream=EventStream(sid, InMemoryFileStore()),
                            llm_registry=LLMRegistry(config=OpenHandsConfig()), sid=sid, plugins=plugins,
                            nats_url=nats_url, **spec)
    call_async_from_sync(runtime.connect)
    return runtime


@pytest.fixture
def runtime(local_corral):
    rt = load_runtime(local_corral)
    yield rt
    rt.close()


@pytest.fixture
def quick_runtime(local_corral):
    """NO_CHANGE_TIMEOUT_SECONDS=1, as OpenHands' interactive tests set it."""
    rt = load_runtime(local_corral, startup_env={"NO_CHANGE_TIMEOUT_SECONDS": "1"})
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def docker_corral(tmp_path_factory):
    """A Docker-backend deployment, or a skip when no Docker engine answers."""
    import shutil
    import subprocess

    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("Docker: no engine answers")
    from tests.integrations.conftest import ThreadedCorral

    with ThreadedCorral(tmp_path_factory.mktemp("corral-docker"), backend="docker") as corral:
        yield corral.url


@pytest.fixture(scope="module")
def main_venv_corral(tmp_path_factory):
    """``corral up`` run by the main venv's Python (3.11, with corral[mcp]: the MCP bridge needs the
    mcp 2.x SDK, while openhands-ai pins 1.x), as a deployment of its own; yields its NATS URL."""
    import os
    from pathlib import Path
    import socket
    import subprocess

    root = Path(__file__).resolve().parents[3]
    python = os.environ.get("CORRAL_MAIN_PYTHON") or str(root / ".venv" / "bin" / "python")
    if not os.path.exists(python):
        pytest.skip(f"no main venv at {python} (set CORRAL_MAIN_PYTHON)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tmp_path_factory.mktemp("corral-main-venv")
    env = {**os.environ, "PATH": f"{Path(python).parent}:{os.environ['PATH']}", "PYTHONPATH": str(root)}
    proc = subprocess.Popen([python, "-m", "cli", "up", "--port", str(port), "--data-dir", str(data),
                             "--backend", "local"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if "corral is up" not in line:
            pytest.fail(f"corral up (main venv) did not start: {line!r}")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
