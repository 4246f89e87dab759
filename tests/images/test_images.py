"""Runtime images against the real Docker engine: bootstrap, content-hash tags, the executor inside.

Skipped as a whole when no engine answers. The first build of a run is made unique (a throw-away
CA certificate) so the build path really runs; the image is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import re
import shutil
import uuid

import pytest
import pytest_asyncio

from executor.client import Claim, ExecutorClient
from images import (
    EXECUTOR_SOURCES,
    HOST_CA_BUNDLE,
    BuildContext,
    BuildFailed,
    DebootstrapMissing,
    DockerRuntimeBuilder,
    EngineUnavailable,
    ImageMissing,
    Progress,
    TagInputs,
    UnknownVariant,
    VariantUnavailable,
    ensure_runtime_image,
    resolve_variants,
    executor_source_digest,
    known_variants,
    open_docker,
    runtime_tag,
)
from images._bootstrap import BootstrapConfig, import_rootfs, rootfs_tarball, run_debootstrap
from images._wheels import source_root
from protocol import CmdOutput, CmdRun, new_id


def _engine_problem() -> str | None:
    async def ping() -> None:
        async with open_docker():
            pass

    try:
        asyncio.run(ping())
    except EngineUnavailable as exc:
        return str(exc)
    return None


_problem = _engine_problem()
pytestmark = [
    pytest.mark.skipif(_problem is not None, reason=f"needs a Docker engine: {_problem}"),
    pytest.mark.asyncio(loop_scope="module"),
]
TAG_FORM = re.compile(r"^corral-runtime:\d+\.\d+\.\d+[A-Za-z0-9_.]*-[0-9a-f]{12}$")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def docker():
    async with open_docker() as client:
        yield client


@pytest.fixture(scope="module")
def unique_ca(tmp_path_factory) -> Path:
    """A real CA certificate with a per-run comment: a new tag, hence a real build, every run."""
    bundle = HOST_CA_BUNDLE.read_text()
    first = bundle[bundle.index("-----BEGIN CERTIFICATE-----"):bundle.index("-----END CERTIFICATE-----") + 25]
    path = tmp_path_factory.mktemp("ca") / "test-ca.crt"
    path.write_text(f"# corral test run {uuid.uuid4()}\n{first}\n")
    return path


class Built:
    def __init__(self, tag: str, builder: DockerRuntimeBuilder, reports: list[Progress], ca: Path) -> None:
        self.tag, self.builder, self.reports, self.ca = tag, builder, reports, ca


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def built(docker, unique_ca):
    reports: list[Progress] = []
    builder = DockerRuntimeBuilder(docker, progress=reports.append)
    tag = await ensure_runtime_image(docker, ca_certs=[unique_ca], progress=reports.append, builder=builder)
    yield Built(tag, builder, reports, unique_ca)
    await docker.images.delete(tag, force=True)


# ----------------------------------------------------------------------------- base image


@pytest.mark.slow
@pytest.mark.timeout(600)  # runs debootstrap (about a minute) when the rootfs tarball is not cached
async def test_bootstrapped_rootfs_imports_as_an_image_with_python_3_11_or_newer(docker):
    tarball = await rootfs_tarball(BootstrapConfig())
    name = f"corral-test-base:{uuid.uuid4().hex[:8]}"
    await import_rootfs(docker, tarball, name, labels={"corral.kind": "test"})
    try:
        container = await docker.containers.run(config={"Image": name, "Cmd": ["python3", "--version"],
                                                        "HostConfig": {"NetworkMode": "none"}})
        try:
            assert (await container.wait())["StatusCode"] == 0
            output = "".join(await container.log(stdout=True, stderr=True))
        finally:
            await container.delete(force=True)
    finally:
        await docker.images.delete(name, force=True)
    major, minor = map(int, re.search(r"Python (\d+)\.(\d+)", output).groups())
    assert (major, minor) >= (3, 11), output


# ----------------------------------------------------------------------------- tags


@pytest.mark.slow
async def test_building_yields_a_content_hash_tag(built):
    assert TAG_FORM.match(built.tag), built.tag
    assert built.builder.statistics().builds == 1
    assert any(r.stage == "build" and "Successfully tagged" in r.message for r in built.reports)


@pytest.mark.slow
async def test_second_ensure_reuses_the_tag_without_building(docker, built):
    reports: list[Progress] = []
    again = await ensure_runtime_image(docker, ca_certs=[built.ca], progress=reports.append, builder=built.builder)
    assert again == built.tag
    assert built.builder.statistics().builds == 1
    assert [r.stage for r in reports if r.stage in ("build", "reuse")] == ["reuse"]


async def test_changing_an_executor_source_changes_the_tag(tmp_path):
    root = source_root()
    for source in EXECUTOR_SOURCES:
        shutil.copytree(root / source, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
    before = executor_source_digest(tmp_path)
    assert before == executor_source_digest(root)
    server = tmp_path / "executor/_server.py"
    server.write_text(server.read_text() + "\n# changed\n")
    after = executor_source_digest(tmp_path)
    inputs = dict(corral_version="0.1.0", base_image_id="sha256:00", wheels=(), dockerfile="FROM x", variants=(),
                  uid=1000, gid=1000, ca_certs=())
    tag_before = runtime_tag(TagInputs(executor_digest=before, **inputs))
    tag_after = runtime_tag(TagInputs(executor_digest=after, **inputs))
    assert before != after and tag_before != tag_after
    assert TAG_FORM.match(tag_before) and TAG_FORM.match(tag_after)


# ----------------------------------------------------------------------------- the executor inside


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor(docker, built, tmp_path_factory):
    """The runtime image's default command, serving on a Unix socket in a bind-mounted host dir."""
    sockets = tmp_path_factory.mktemp("sock")
    shutil.chown(sockets, 1000, 1000)
    key = uuid.uuid4().hex
    config = {"key": key, "workdir": "/workspace", "output_dir": "/tmp/corral-out",
              "socket_path": "/run/corral/executor.sock"}
    container = await docker.containers.run(config={
        "Image": built.tag, "Env": [f"CORRAL_EXECUTOR_CONFIG={json.dumps(config)}"],
        "HostConfig": {"NetworkMode": "none", "Binds": [f"{sockets}:/run/corral"]},
    })
    client = ExecutorClient(key=key, socket_path=str(sockets / "executor.sock"))
    try:
        await asyncio.wait_for(_ready_line(container), timeout=30)
        yield client
    finally:
        await client.aclose()
        await container.delete(force=True)


async def _ready_line(container) -> dict:
    async for line in container.log(stdout=True, follow=True):
        if line.startswith("{") and '"ready"' in line:
            return json.loads(line)
    raise AssertionError("the executor exited before printing its ready line")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def claimed(executor):
    await executor.claim(Claim(session_id="s-image-test"))
    return executor


async def _run(client: ExecutorClient, command: str) -> CmdOutput:
    final = None
    async for obs in client.execute(CmdRun(id=new_id(), command=command)):
        final = obs
    assert isinstance(final, CmdOutput), final
    return final


@pytest.mark.slow
async def test_executor_in_the_image_answers_health_over_the_unix_socket(executor):
    answer = await executor.health()
    assert answer.ok is True


@pytest.mark.slow
async def test_executor_runs_a_command_after_claim(claimed):
    out = await _run(claimed, "echo hi")
    assert (out.status, out.exit_code, out.content.strip()) == ("completed", 0, "hi")


@pytest.mark.slow
async def test_executor_runs_as_user_corral_uid_1000_in_workspace(claimed):
    out = await _run(claimed, "echo $(id -u) $(id -un) $(pwd)")
    assert out.content.strip() == "1000 corral /workspace"


@pytest.mark.slow
async def test_tini_is_pid_1(claimed):
    out = await _run(claimed, "tr '\\0' ' ' < /proc/1/cmdline")
    assert out.content.split()[:3] == ["/usr/bin/tini", "--", "corral-executor"]


@pytest.mark.slow
async def test_extra_ca_certificate_is_in_the_trust_store(claimed):
    # update-ca-certificates links every accepted certificate into /etc/ssl/certs.
    out = await _run(claimed, "readlink /etc/ssl/certs/corral-00.pem")
    assert out.content.strip() == "/usr/local/share/ca-certificates/corral/corral-00.crt"


# ----------------------------------------------------------------------------- errors


async def test_unknown_variant_is_rejected_with_the_known_ones(docker):
    with pytest.raises(UnknownVariant, match="known variants: " + ", ".join(known_variants())):
        await ensure_runtime_image(docker, variants=["gpu"])


async def test_placeholder_variant_is_not_available_yet(tmp_path):
    (tmp_path / "later.Dockerfile.tmpl").write_text("# corral image variant: later\n# status: not-available soon\n")
    with pytest.raises(VariantUnavailable, match="not available yet"):
        resolve_variants(["later"], directory=tmp_path)


async def test_missing_base_image_names_the_command_that_makes_it(docker):
    name = f"corral-test-missing:{uuid.uuid4().hex[:8]}"
    with pytest.raises(ImageMissing) as info:
        await ensure_runtime_image(docker, base=name)
    assert info.value.image == name
    assert f"docker pull {name}" in str(info.value)


async def test_missing_corral_base_names_the_bootstrap_command(docker):
    with pytest.raises(ImageMissing, match=r"corral image bootstrap --suite corral-test-never"):
        await ensure_runtime_image(docker, base="corral-base:corral-test-never")


async def test_build_failure_reports_the_last_log_lines(docker):
    builder = DockerRuntimeBuilder(docker)
    context = BuildContext(dockerfile="FROM corral-base:bookworm\nRUN echo failing-step-output && exit 3\n")
    with pytest.raises(BuildFailed) as info:
        await builder.build(context, [f"corral-test-fail:{uuid.uuid4().hex[:8]}"])
    assert any("failing-step-output" in line for line in info.value.log_tail)
    assert "failing-step-output" in str(info.value)


async def test_unreachable_engine_names_dockerd_and_docker_host(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(EngineUnavailable, match=r"dockerd.*DOCKER_HOST"):
        async with open_docker():
            pass


async def test_missing_debootstrap_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DebootstrapMissing, match=r"apt-get install debootstrap"):
        await run_debootstrap(BootstrapConfig(cache_dir=str(tmp_path)))
