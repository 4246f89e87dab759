"""The vscode plugin in bubblewrap sandboxes: the host's code-server install bound read-only at the
image's path, started as the unprivileged sandbox user, nothing of it in the workspace (its HOME)."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from executor.client import ExecutorClient
from executor.code_server import IMAGE_ROOT
from images import code_server_root
from protocol import SessionSpec

from ..workers.backends.test_bubblewrap import backend, run  # noqa: F401  (fixture)
from .test_vscode_docker import _FETCH, _PROCESSES

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.skipif(code_server_root() is None, reason="code-server is not installed on this host: "
                                 "corral vscode install (./dev setup does)"),
              pytest.mark.slow, pytest.mark.timeout(180)]


async def test_code_server_in_a_bubblewrap_sandbox_serves_the_workbench_as_the_sandbox_user(backend):  # noqa: F811
    handle = await backend.create("s-vscode", SessionSpec(plugins=["vscode"]))
    client = ExecutorClient(key=handle.key, socket_path=handle.socket_path)
    try:
        server = await client.vscode()
        fetched = await run(handle, f"python3 -c {shlex.quote(_FETCH)} {server.port}")
        assert json.loads(fetched.content) == {"healthz": 200, "status": True, "page": 200, "workbench": True}
        uids = json.loads((await run(handle, f"python3 -c {shlex.quote(_PROCESSES)}")).content)
        assert uids and set(uids) == {1000}
        listing = await run(handle, f"ls -A /workspace; touch {IMAGE_ROOT}/x 2>&1 | grep -c Read-only")
        assert listing.content == "1\n"  # an empty workspace (HOME there), and the install is read-only
    finally:
        await client.aclose()
        await backend.destroy(handle)


async def test_the_pool_key_of_a_vscode_session_differs_from_a_plain_one(backend):  # noqa: F811
    assert backend.pool_key(SessionSpec(plugins=["vscode"])) != backend.pool_key(SessionSpec())
