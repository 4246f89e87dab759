"""What the kubernetes backend refuses at create, before any pod exists (no cluster needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("kubernetes_asyncio", reason="the kubernetes extra is not installed")

from protocol import Mount, Placement, SessionSpec  # noqa: E402
from workers.backends import BackendError  # noqa: E402
from workers.backends.kubernetes import KubernetesBackend, KubernetesConfig  # noqa: E402


@pytest.fixture
def backend(tmp_path):
    return KubernetesBackend(base_dir=str(tmp_path), worker_id="wk-spec",
                             config=KubernetesConfig(kubeconfig=str(tmp_path / "absent"), image="corral-runtime:x"))


@pytest.mark.parametrize(("spec", "words"), [
    (SessionSpec(network="egress"), "egress"),
    (SessionSpec(mounts=[Mount(source="/tmp", target="/data")]), "mounts no host directories"),
    (SessionSpec(plugins=["jupyter"]), "plugins need their image variants"),
])
def test_what_a_pod_cannot_have_is_invalid_spec_saying_why(backend, spec, words):
    backend.allowed_mounts = ("/tmp",)  # even an allowed root: a pod does not see the worker's host
    with pytest.raises(BackendError) as excinfo:
        backend.validate(spec)
    assert excinfo.value.code == "invalid_spec" and words in str(excinfo.value)


def test_persistence_and_placement_are_accepted(backend):
    backend.validate(SessionSpec(persistent=True, placement=Placement(node_selector={"disk": "ssd"}, runtime_class="gvisor")))
