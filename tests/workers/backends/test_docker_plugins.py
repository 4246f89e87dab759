"""The Docker backend and a session's plugins: the image with their variants, or a clear refusal."""

from __future__ import annotations

import pytest

from protocol import SessionSpec, codes
from workers.backends import BackendError

from .test_docker import (  # noqa: F401  (fixtures)
    ENGINE,
    inspect,
    make_backend,
    run,
    runtime_image,
    worker_id,
)

pytestmark = pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)")
images = pytest.importorskip("images", reason="the image builder is not available")


async def _variants(image: str) -> frozenset[str] | None:
    async with images.open_docker() as docker:
        return await images.image_variants(docker, image)


@pytest.mark.slow
@pytest.mark.timeout(600)  # builds the variant image when `./dev test` has not already
async def test_plugins_without_an_image_get_the_runtime_image_with_their_variants(make_backend):
    backend = make_backend(image=None)
    handle = await backend.create("s-skills", SessionSpec(plugins=["agent_skills"]))
    image = (await inspect(handle))["Config"]["Image"]
    assert await _variants(image) == {"agent_skills", "jupyter"}
    out = await run(handle, "/opt/corral/venv/bin/python -c 'import ipykernel, jupyter_client, pypdf; print(\"ok\")'")
    assert (out.exit_code, out.content) == (0, "ok\n")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_named_image_with_the_variant_serves_the_plugin(make_backend):
    skills = make_backend(image=None)
    image = await skills._image(skills.limits(SessionSpec(plugins=["agent_skills"])))
    backend = make_backend(image=image)
    handle = await backend.create("s-named", SessionSpec(plugins=["jupyter"]))
    assert (await inspect(handle))["Config"]["Image"] == image


async def test_a_named_image_without_the_variant_is_plugin_unavailable_naming_the_build_command(make_backend):
    backend = make_backend()  # the plain runtime image
    with pytest.raises(BackendError) as info:
        await backend.create("s-plain", SessionSpec(plugins=["jupyter"]))
    assert info.value.code == codes.PLUGIN_UNAVAILABLE
    assert "'jupyter'" in str(info.value) and "corral image build --with jupyter" in str(info.value)
    assert await backend._containers() == []


async def test_an_unknown_plugin_is_invalid_spec_naming_it(make_backend):
    backend = make_backend()
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(plugins=["no-such-plugin"]))
    assert info.value.code == codes.INVALID_SPEC
    assert "'no-such-plugin'" in str(info.value)


async def test_warm_pools_of_different_variant_sets_never_mix(make_backend):
    backend = make_backend(image=None)
    keys = [backend.pool_key(SessionSpec(plugins=p)) for p in ([], ["jupyter"], ["agent_skills"])]
    assert len(set(keys)) == 3
    assert backend.pool_key(SessionSpec(plugins=["jupyter"])) == backend.pool_key(SessionSpec(plugins=["jupyter"] * 2))
    assert backend.pool_key(SessionSpec(plugins=["no-such-plugin"])) is None
