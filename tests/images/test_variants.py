"""Image variants: their headers, the wheels they bring from the host, and a real kernel in the image.

The variant image (``--with agent_skills``, which implies jupyter) is what `./dev test` builds
before pytest; here it is ensured again, so a cached run builds nothing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import sys
import uuid

import pytest
import pytest_asyncio

from images import (
    DockerRuntimeBuilder,
    ImageError,
    Progress,
    UnknownVariant,
    VariantUnavailable,
    default_cache_dir,
    ensure_runtime_image,
    image_variants,
    load_variant,
    open_docker,
    probe_base,
    resolve_variants,
)
from images._dockerfile import render_variant
from images._ensure import _plan
from images._wheels import Wheelhouse, pin_closure, sha256_file

REPO = Path(__file__).resolve().parents[2]


from .test_images import _problem  # noqa: E402  (one engine probe for both modules)


def needs_engine(test):
    """An async test against the engine, on the module's event loop (its fixtures' loop)."""
    test = pytest.mark.asyncio(loop_scope="module")(test)
    return pytest.mark.skipif(_problem is not None, reason=f"needs a Docker engine: {_problem}")(test)


# ----------------------------------------------------------------------------- headers


def _variant(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.Dockerfile.tmpl").write_text(text)


def test_agent_skills_requires_jupyter_and_names_its_wheels():
    skills = load_variant("agent_skills")
    assert skills.available and skills.requires == ("jupyter",)
    assert {r.split(">")[0] for r in skills.wheels} == {"pypdf", "python-docx", "python-pptx", "pylatexenc"}
    assert {r.split(">")[0] for r in load_variant("jupyter").wheels} == {"ipykernel", "jupyter_client"}


def test_asking_for_agent_skills_implies_jupyter_installed_first():
    assert [v.name for v in resolve_variants(["agent_skills"])] == ["jupyter", "agent_skills"]
    assert [v.name for v in resolve_variants(["jupyter", "agent_skills", "jupyter"])] == ["jupyter", "agent_skills"]


def test_the_header_ends_at_the_first_instruction(tmp_path):
    _variant(tmp_path, "late", "# wheels: early\nRUN true\n# wheels: ignored\n# requires: ignored\n")
    late = load_variant("late", tmp_path)
    assert (late.wheels, late.requires, late.available) == (("early",), (), True)


def test_a_not_available_status_rejects_the_variant_and_what_requires_it(tmp_path):
    _variant(tmp_path, "gpu", "# status: not-available no drivers yet\n")
    _variant(tmp_path, "cuda", "# requires: gpu\nRUN true\n")
    with pytest.raises(VariantUnavailable, match="no drivers yet"):
        resolve_variants(["cuda"], tmp_path)


def test_variants_requiring_each_other_in_a_circle_are_an_error(tmp_path):
    _variant(tmp_path, "a", "# requires: b\n")
    _variant(tmp_path, "b", "# requires: a\n")
    with pytest.raises(ImageError, match="circle"):
        resolve_variants(["a"], tmp_path)


def test_a_required_variant_that_does_not_exist_is_unknown(tmp_path):
    _variant(tmp_path, "a", "# requires: nothing-here\n")
    with pytest.raises(UnknownVariant, match="nothing-here"):
        resolve_variants(["a"], tmp_path)


def test_the_fragment_installs_the_header_names_offline_from_its_context_dir():
    text = render_variant(load_variant("jupyter"), pip_wheel="pip-1-py3-none-any.whl")
    assert "COPY variant-wheels/jupyter/ " in text
    assert "--no-index --find-links /tmp/corral-variant-wheels ipykernel jupyter_client;" in text


def test_requirements_the_host_has_are_pinned_to_its_versions_with_their_dependencies():
    import importlib.metadata

    from images import BaseFacts

    facts = BaseFacts(image_id="sha256:00", python="3.11", machine="x86_64", glibc="2.36", tini="")
    plan = pin_closure(("ipykernel>=6.29", "corral-test-not-installed>=1"), facts)
    assert f"ipykernel=={importlib.metadata.version('ipykernel')}" in plan.pinned
    assert f"pyzmq=={importlib.metadata.version('pyzmq')}" in plan.pinned  # a dependency, followed
    assert plan.unpinned == ("corral-test-not-installed>=1",)


# ----------------------------------------------------------------------------- the variant image


class Built:
    def __init__(self, tag: str, builds: int, reports: list[Progress]) -> None:
        self.tag, self.builds, self.reports = tag, builds, reports


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def docker():
    async with open_docker() as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def skills_image(docker):
    reports: list[Progress] = []
    builder = DockerRuntimeBuilder(docker, progress=reports.append)
    tag = await ensure_runtime_image(docker, variants=["agent_skills"], progress=reports.append, builder=builder)
    return Built(tag, builder.statistics().builds, reports)


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)  # a first build downloads the wheels (about a minute)
async def test_the_variant_image_is_labelled_with_its_sorted_variants(docker, skills_image):
    assert await image_variants(docker, skills_image.tag) == {"agent_skills", "jupyter"}
    found = await docker.images.inspect(skills_image.tag)
    assert found["Config"]["Labels"]["corral.variants"] == "agent_skills,jupyter"


@needs_engine
async def test_a_missing_image_has_no_variants(docker):
    assert await image_variants(docker, f"corral-test-missing:{uuid.uuid4().hex[:8]}") is None


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_second_ensure_downloads_and_builds_nothing(docker, skills_image):
    reports: list[Progress] = []
    builder = DockerRuntimeBuilder(docker, progress=reports.append)
    again = await ensure_runtime_image(docker, variants=["jupyter", "agent_skills"], progress=reports.append,
                                       builder=builder)
    assert again == skills_image.tag
    assert builder.statistics().builds == 0
    assert not [r for r in reports if r.stage == "wheelhouse" and (" download " in r.message or "wheel " in r.message)]
    assert sum(r.stage == "wheelhouse" and r.message.startswith("reusing") for r in reports) == 2


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_variant_wheels_by_name_and_sha256_are_part_of_the_tag(docker, skills_image):
    facts = await probe_base(docker, "corral-base:bookworm", cache_dir=default_cache_dir())
    wheels = await Wheelhouse(default_cache_dir()).requirement_wheels(load_variant("agent_skills").wheels, facts)
    pypdf = next(w for w in wheels if w.name.startswith("pypdf-"))
    plan = await _plan(docker, "corral-base:bookworm", resolve_variants(["agent_skills"]), uid=1000, gid=1000,
                       certs=[], cache=default_cache_dir(), progress=None)
    assert plan.tag == skills_image.tag
    assert (pypdf.name, sha256_file(pypdf)) in plan.inputs.wheels
    assert plan.tag != await ensure_runtime_image(docker)


# A kernel the way the executor starts one: `python -m ipykernel_launcher -f FILE`, no kernelspec.
KERNEL_SCRIPT = r"""
import json, os, subprocess, sys, tempfile
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
path, _ = write_connection_file(os.path.join(tempfile.mkdtemp(), "kernel.json"), ip="127.0.0.1")
kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", path],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
client = BlockingKernelClient(connection_file=path)
client.load_connection_file()
client.start_channels()
client.wait_for_ready(timeout=60)
results = []
def hook(msg):
    if msg["msg_type"] == "execute_result":
        results.append(msg["content"]["data"]["text/plain"])
code = "import pypdf, docx, pptx, pylatexenc, os\n(1 + 1, os.getuid(), os.environ['HOME'])"
reply = client.execute_interactive(code, timeout=60, output_hook=hook)
client.shutdown()
kernel.wait(timeout=30)
print(json.dumps({"status": reply["content"]["status"], "results": results}))
"""


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_kernel_in_the_image_runs_a_cell_offline_as_the_sandbox_user_on_a_read_only_root(docker, skills_image):
    container = await docker.containers.create(config={
        "Image": skills_image.tag, "User": "1000:1000",
        "Entrypoint": ["/opt/corral/venv/bin/python", "-c", KERNEL_SCRIPT], "Cmd": [],
        "NetworkDisabled": True,
        "HostConfig": {"NetworkMode": "none", "ReadonlyRootfs": True, "CapDrop": ["ALL"],
                       "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}},
    })
    try:
        await container.start()
        status = await asyncio.wait_for(container.wait(), timeout=120)
        output = "".join(await container.log(stdout=True, stderr=True))
    finally:
        await container.delete(force=True)
    assert status["StatusCode"] == 0, output
    answer = json.loads(output.strip().splitlines()[-1])
    assert answer == {"status": "ok", "results": ["(2, 1000, '/home/corral')"]}, output


async def _corral(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli.main", *args, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("flags", [["--with", "jupyter,agent_skills"], ["--with", "agent_skills", "--with", "jupyter"]])
async def test_cli_build_takes_variants_comma_separated_or_repeated_and_prints_the_tag_last(skills_image, flags):
    out = await _corral("image", "build", "--quiet", *flags)
    assert out.splitlines()[-1] == skills_image.tag


@needs_engine
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_cli_ls_shows_the_variants(skills_image):
    rows = [line.split() for line in (await _corral("image", "ls")).splitlines()]
    assert rows[0][-1] == "VARIANTS"
    assert [skills_image.tag, "agent_skills,jupyter"] in [[row[0], row[-1]] for row in rows]
