"""The jupyter and agent_skills plugins in bubblewrap sandboxes: the runtime copy that carries the
kernel's packages, a real kernel as the unprivileged sandbox user, driven through a whole deployment."""

from __future__ import annotations

import shutil

import pytest

from cli.up import Deployment, UpConfig
from protocol import Client, IPythonOutput
from workers.backends.bubblewrap import RUNTIME_MOUNT, SANDBOX_UID

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.slow, pytest.mark.timeout(300)]  # a first run copies the plugins' packages


@pytest.fixture
async def client(nats_server, tmp_path):
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="bubblewrap", audit=False)
    async with Deployment(config) as dep:
        async with await Client.connect(dep.url) as c:
            yield c


async def test_a_kernel_runs_cells_as_the_sandbox_user_and_survives_its_death(client):
    async with await client.create_session(plugins=["agent_skills"], timeout_s=120) as s:
        assert s.info.backend == "bubblewrap"
        out = await s.ipython("import os; print(os.getuid()); 1+1")
        assert isinstance(out, IPythonOutput) and out.status == "completed", out
        assert out.content == f"{SANDBOX_UID}\n2\n"  # the sandbox's user (the host's corral-sandbox), never root
        died = await s.ipython("os._exit(1)")
        assert died.status == "failed" and "exit code 1" in died.reason
        again = await s.ipython("'os' in dir()")
        assert again.kernel_restarted and again.content == "False\n" and again.status == "completed"


async def test_agent_skills_open_a_workspace_file(client):
    async with await client.create_session(plugins=["agent_skills"]) as s:
        await s.write_file("/workspace/a.py", "x = 1\n")
        shown = await s.ipython("open_file('/workspace/a.py')")
        assert "[File: /workspace/a.py (1 lines total)]" in shown.content and "1|x = 1" in shown.content, shown


async def test_python_started_from_a_cell_does_not_see_the_runtime(client):
    async with await client.create_session(plugins=["jupyter"]) as s:
        kernel = await s.ipython("import sys, ipykernel; print(ipykernel.__file__)")
        assert kernel.content.startswith(f"{RUNTIME_MOUNT}/ipykernel/"), kernel
        child = await s.ipython('!python3 -c "import os, sys; print(sys.path, os.environ.get(\'PYTHONPATH\'))"')
        assert child.status == "completed" and "None" in child.content, child
        assert RUNTIME_MOUNT not in child.content and ".venv" not in child.content, child.content
