"""The vscode plugin in Docker sandboxes: the variant image (code-server and node copied from the host
cache), code-server started by the executor in a container with no network, as the sandbox user."""

from __future__ import annotations

import json
import shlex

import pytest

from protocol import SessionSpec

from ..workers.backends.test_docker import (  # noqa: F401  (fixtures)
    ENGINE,
    client_for,
    make_backend,
    run,
    runtime_image,
    worker_id,
)

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow, pytest.mark.timeout(900)]  # a first run installs code-server and builds the image

_FETCH = """
import json, sys, urllib.request
def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%s" % sys.argv[1] + path, timeout=10) as r:
        return r.status, r.read().decode()
health, page = get("/healthz"), get("/?folder=/workspace")
print(json.dumps({"healthz": health[0], "status": json.loads(health[1])["status"] in ("alive", "expired"), "page": page[0],
                  "workbench": "vscode-workbench-web-configuration" in page[1]}))
"""

_PROCESSES = """
import json, os
out = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\\0")
        uid = os.stat("/proc/%s" % pid).st_uid
    except OSError:
        continue
    if any(b"code-server" in part for part in cmd):
        out.append(uid)
print(json.dumps(out))
"""


@pytest.fixture
async def vscode_sandbox(make_backend):
    backend = make_backend(image=None)  # the runtime image with the session's variants, built on first need
    handle = await backend.create("s-vscode", SessionSpec(plugins=["vscode"], network="none"))
    client = client_for(handle)
    try:
        yield handle, client
    finally:
        await client.aclose()


async def test_code_server_in_a_container_without_network_serves_the_workbench_as_the_sandbox_user(vscode_sandbox):
    handle, client = vscode_sandbox
    server = await client.vscode()
    assert server.workdir == "/workspace"
    fetched = await run(handle, f"python3 -c {shlex.quote(_FETCH)} {server.port}")
    assert fetched.exit_code == 0, fetched.content
    assert json.loads(fetched.content) == {"healthz": 200, "status": True, "page": 200, "workbench": True}
    uids = json.loads((await run(handle, f"python3 -c {shlex.quote(_PROCESSES)}")).content)
    assert uids and set(uids) == {1000}
    listing = await run(handle, "ls -A /workspace; ls /tmp/corral/outputs/vscode-server")
    assert listing.content.split() == ["code-server.log", "config.yaml", "data", "extensions", "xdg"]
