"""The backend contract (workers.backends.contract) run against every backend we ship.

Real sandboxes: local processes, bubblewrap namespaces, Docker containers, remote executors
(``corral-executor --listen`` on loopback, over TLS, started here). A third party runs the
same suite against theirs; ``test_third_party.py`` does so for a backend installed by entry point.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

import pytest

from protocol import new_id
from workers.backends import Backend, RemoteConfig, make_backend
from workers.backends.contract import BackendContract
from workers.backends.docker import DockerConfig

from .remote_executors import make_pki, start_executor, stop_executor, write_executors_file
from .test_docker import ENGINE, runtime_image  # noqa: F401  (fixture)
from .test_kubernetes import KUBECONFIG, NO_CLUSTER, k8s_image, namespace  # noqa: F401  (fixtures)


class _Ours(BackendContract):
    config: object = None

    @pytest.fixture
    def backend_config(self):
        return self.config

    @pytest.fixture
    async def make(self, tmp_path, backend_config):
        """Backends of one kind sharing a base dir and worker id, as a worker and its restart would."""
        made: list[Backend] = []
        worker_id = "wc-" + new_id()[:8]
        config = backend_config

        def build() -> Backend:
            backend = make_backend(config, base_dir=str(tmp_path / "data"), worker_id=worker_id)
            made.append(backend)
            return backend

        yield build
        cleanup = build()
        for handle in await cleanup.inventory():
            await cleanup.destroy(handle)
        for backend in made:
            await backend.aclose()


class TestLocal(_Ours):
    config = "local"

    async def kill(self, backend, handle):
        os.killpg(handle.pid, signal.SIGKILL)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
class TestBubblewrap(_Ours):
    config = "bubblewrap"

    async def kill(self, backend, handle):
        os.kill(handle.pid, signal.SIGKILL)


@pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")
class TestDocker(_Ours):
    @pytest.fixture
    def backend_config(self, runtime_image):  # noqa: F811
        return DockerConfig(image=runtime_image)

    async def kill(self, backend, handle):
        proc = await asyncio.create_subprocess_exec("docker", "kill", handle.container_id,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0


class TestRemote(_Ours):
    """Three executors as three VMs would run them; the contract claims, releases and kills them."""

    @pytest.fixture
    async def backend_config(self, tmp_path):
        pki = make_pki(tmp_path / "pki")
        executors = await asyncio.gather(*(start_executor(tmp_path / f"vm{i}", pki=pki) for i in range(3)))
        yield RemoteConfig(executors_file=write_executors_file(tmp_path / "executors.json", list(executors), pki.ca_file))
        await asyncio.gather(*(stop_executor(e) for e in executors))

    async def kill(self, backend, handle):
        os.kill(handle.pid, signal.SIGKILL)  # the executor's process: on loopback, it is ours to kill


@pytest.mark.kubernetes
@pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")
class TestKubernetes(_Ours):
    @pytest.fixture
    def backend_config(self, k8s_image, namespace):  # noqa: F811
        from workers.backends.kubernetes import KubernetesConfig

        return KubernetesConfig(kubeconfig=KUBECONFIG, namespace=namespace, image=k8s_image, cpus=0.1, memory_mb=256,
                                grace_period_s=1)

    async def kill(self, backend, handle):
        """The pod deleted at once: its handle file stays, as a killed container's does."""
        core = await backend.core()
        await core.delete_namespaced_pod(handle.container_id, backend.namespace, grace_period_seconds=0)
