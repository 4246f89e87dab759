"""The jupyter and agent_skills plugins in Docker sandboxes: the variant image, a real kernel in the
container (uid 1000, no network, read-only root where asked), driven through a whole worker."""

from __future__ import annotations

import pytest

from protocol import FileEdit, IPythonOutput, new_id

from ..workers.backends.test_docker import ENGINE, docker_deployment, runtime_image  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow, pytest.mark.timeout(600)]  # a first run builds the variant image


@pytest.fixture
async def client(nats_server, tmp_path, runtime_image):  # noqa: F811  (the fixture builds the image first)
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), None, prefix="wj") as c:
        yield c


async def test_a_kernel_in_a_container_runs_cells_as_the_sandbox_user_and_survives_its_death(client):
    async with await client.create_session(plugins=["agent_skills"], timeout_s=120) as s:
        out = await s.ipython("import os, sys; print(os.getuid(), sys.executable); os.getcwd()")
        assert isinstance(out, IPythonOutput) and out.status == "completed", out
        assert out.content == "1000 /opt/corral/venv/bin/python\n'/workspace'\n"
        assert (await s.ipython("!id -u")).content == "1000\n"
        died = await s.ipython("os._exit(1)")
        assert died.status == "failed" and "exit code 1" in died.reason
        again = await s.ipython("'os' in dir()")
        assert again.kernel_restarted and again.content == "False\n"


async def test_agent_skills_in_a_container_edit_with_the_executors_undo_history(client):
    async with await client.create_session(plugins=["agent_skills"]) as s:
        await s.write_file("/workspace/a.py", "x = 1\n")
        shown = await s.ipython("open_file('/workspace/a.py')")
        assert "[File: /workspace/a.py (1 lines total)]" in shown.content and "1|x = 1" in shown.content, shown
        edited = await s.ipython("file_editor(command='str_replace', path='/workspace/a.py', old_str='x = 1', new_str='x = 2')")
        assert edited.status == "completed", edited
        assert (await s.read_file("/workspace/a.py")).content == "x = 2\n"
        await s.run(FileEdit(id=new_id(), command="undo_edit", path="/workspace/a.py"))
        assert (await s.read_file("/workspace/a.py")).content == "x = 1\n"
