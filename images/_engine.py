"""The edge to the Docker engine: connecting, translating aiodocker errors, small queries."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Iterator

import aiodocker
from aiodocker.exceptions import DockerError
import msgspec

from ._errors import EngineUnavailable, ImageError

ENGINE_UNREACHABLE = 900  # aiodocker's status for "could not connect"


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate aiodocker's connection failures into EngineUnavailable; other errors into ImageError."""
    try:
        yield
    except DockerError as exc:
        if exc.status == ENGINE_UNREACHABLE:
            raise EngineUnavailable(exc.message) from exc
        raise ImageError(f"{what}: {exc.message}") from exc
    except OSError as exc:
        raise EngineUnavailable(str(exc)) from exc


@contextlib.asynccontextmanager
async def open_docker() -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client whose engine has answered a version request."""
    try:
        docker = aiodocker.Docker()
    except ValueError as exc:  # aiodocker found neither DOCKER_HOST nor a local socket
        raise EngineUnavailable(str(exc)) from exc
    try:
        with engine_errors("asking the engine for its version"):
            await docker.version()
        yield docker
    finally:
        await docker.close()


async def image_inspect(docker: aiodocker.Docker, name: str) -> dict | None:
    """The engine's inspect document for an image, or None when it does not exist."""
    try:
        return await docker.images.inspect(name)
    except DockerError as exc:
        if exc.status == 404:
            return None
        if exc.status == ENGINE_UNREACHABLE:
            raise EngineUnavailable(exc.message) from exc
        raise ImageError(f"inspecting image {name!r}: {exc.message}") from exc


VARIANTS_LABEL = "corral.variants"
"""On every runtime image: its variants, sorted and comma-separated (empty for none)."""


async def image_variants(docker: aiodocker.Docker, image: str) -> frozenset[str] | None:
    """The variants a runtime image was built with (its ``corral.variants`` label); None when the
    image does not exist. An image without the label (not built by corral) has none."""
    found = await image_inspect(docker, image)
    if found is None:
        return None
    return _variants_of((found.get("Config") or {}).get("Labels"))


def _variants_of(labels: dict[str, str] | None) -> frozenset[str]:
    return frozenset(v for v in (labels or {}).get(VARIANTS_LABEL, "").split(",") if v)


_REPOSITORIES = {"base": "corral-base", "runtime": "corral-runtime"}


class ImageSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tags: tuple[str, ...]
    kind: str
    size_bytes: int
    created: int
    variants: tuple[str, ...] = ()


async def list_corral_images(docker: aiodocker.Docker) -> list[ImageSummary]:
    """Images made by corral (labelled ``corral.kind``), newest first."""
    with engine_errors("listing images"):
        found = await docker.images.list(filters={"label": ["corral.kind"]})
    out = []
    for img in found:
        tags = tuple(t for t in img.get("RepoTags") or () if t != "<none>:<none>")
        kind = (img.get("Labels") or {}).get("corral.kind", "")
        # Labels are inherited: an image built FROM corral-base carries kind=base too.
        if kind in _REPOSITORIES and not any(t.startswith(_REPOSITORIES[kind] + ":") for t in tags):
            kind = "derived"
        out.append(ImageSummary(id=img["Id"], tags=tags, kind=kind, size_bytes=int(img.get("Size", 0)),
                                created=int(img.get("Created", 0)),
                                variants=tuple(sorted(_variants_of(img.get("Labels"))))))
    return sorted(out, key=lambda s: s.created, reverse=True)


async def run_to_completion(docker: aiodocker.Docker, config: dict, *, name_hint: str) -> tuple[int, str]:
    """Run a throw-away container to its end; its exit code and its combined output."""
    with engine_errors(f"running a {name_hint} container"):
        container = await docker.containers.create(config=config)
        try:
            await container.start()
            result = await container.wait()
            logs = await container.log(stdout=True, stderr=True)
        finally:
            await container.delete(force=True)
    return int(result.get("StatusCode", -1)), "".join(logs)
