"""ensure_runtime_image: the one call a backend makes to get a runtime image tag."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
import time
from typing import Sequence
import weakref

import aiodocker

from ._base import BaseFacts, probe_base
from ._bootstrap import BASE_REPOSITORY, BootstrapConfig, base_image_name, bootstrap_base_image, default_cache_dir
from ._builder import BuildContext, DockerRuntimeBuilder, RuntimeBuilder
from ._dockerfile import (
    RUNTIME_REPOSITORY,
    TagInputs,
    Variant,
    corral_version,
    executor_source_digest,
    render_dockerfile,
    resolve_variants,
    runtime_tag,
    variant_files_dir,
    variant_wheel_dir,
)
from ._engine import VARIANTS_LABEL, image_inspect
from ._errors import ImageError, ImageMissing
from ._host_files import host_files
from ._progress import ProgressFn, reporter
from ._wheels import Wheelhouse, sha256_file, source_root

DEFAULT_BASE = base_image_name()
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

def build_command(image: str) -> str:
    """The command that makes ``image`` on this machine."""
    repo, _, tag = image.rpartition(":")
    if repo == BASE_REPOSITORY:
        return "corral image bootstrap" + ("" if tag == "bookworm" else f" --suite {tag}")
    if repo == RUNTIME_REPOSITORY:
        return "corral image build  (and configure the tag it prints)"
    return f"docker pull {image}  (or docker build / docker load it; then: corral image build --base {image})"


async def require_image(docker: aiodocker.Docker, image: str) -> None:
    """Raise ImageMissing, naming the command that builds it, when a configured image does not exist."""
    if await image_inspect(docker, image) is None:
        raise ImageMissing(image, build_command(image))


async def ensure_runtime_image(
    docker: aiodocker.Docker,
    *,
    base: str | None = None,
    variants: Sequence[str] = (),
    uid: int = 1000,
    gid: int | None = None,
    ca_certs: Sequence[str | Path] = (),
    progress: ProgressFn | None = None,
    cache_dir: str | Path | None = None,
    builder: RuntimeBuilder | None = None,
) -> str:
    """The tag of a runtime image for these inputs, building it (and the default base) only when missing.

    ``base`` None means ``corral-base:bookworm``, bootstrapped here when the engine lacks it; a
    named base that is missing raises :class:`ImageMissing`. ``ca_certs`` are PEM files added to the
    image's trust store. ``builder`` defaults to a :class:`DockerRuntimeBuilder` on ``docker``.
    """
    report = reporter(progress)
    started = time.monotonic()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    chosen = resolve_variants(tuple(variants))
    certs = [_read_cert(Path(c)) for c in ca_certs]
    base_name = base or DEFAULT_BASE
    if await image_inspect(docker, base_name) is None:
        if base is not None:
            raise ImageMissing(base_name, build_command(base_name))
        report("bootstrap", f"{base_name} is missing: bootstrapping it")
        await bootstrap_base_image(docker, BootstrapConfig(cache_dir=str(cache)), progress=progress)
    plan = await _plan(docker, base_name, chosen, uid=uid, gid=uid if gid is None else gid, certs=certs,
                       cache=cache, progress=progress)
    builder = builder or DockerRuntimeBuilder(docker, progress=progress)
    async with _lock(plan.tag):
        if await builder.image_exists(plan.tag):
            report("reuse", f"{plan.tag} exists; nothing to build")
            return plan.tag
        await builder.build(await plan.context(), [plan.tag])
    found = await image_inspect(docker, plan.tag)
    report("done", f"{plan.tag} {(found or {}).get('Size', 0) / 1e6:.0f}MB {time.monotonic() - started:.1f}s")
    return plan.tag


class _Plan:
    """What a runtime image is made of, known before anything is built."""

    def __init__(self, *, tag: str, inputs: TagInputs, base_name: str, facts: BaseFacts, wheels: tuple[Path, ...],
                 variant_wheels: dict[str, tuple[Path, ...]], certs: list[bytes], wheelhouse: Wheelhouse,
                 root: Path, trees: dict[str, str]) -> None:
        self.tag, self.inputs, self.base_name, self.facts = tag, inputs, base_name, facts
        self._wheels, self._certs, self._wheelhouse, self._root = wheels, certs, wheelhouse, root
        self._variant_wheels, self._trees = variant_wheels, trees

    async def context(self) -> BuildContext:
        """The build context; builds corral's wheel (cached by executor digest) on the way."""
        inputs = self.inputs
        corral = await self._wheelhouse.corral_wheel(self._root, key=f"{inputs.corral_version}-{inputs.executor_digest[:16]}")
        files = {f"wheelhouse/{w.name}": w.read_bytes() for w in (*self._wheels, corral)}
        pip = self._wheels[0]
        for name, wheels in self._variant_wheels.items():  # each with the pip that installs them
            files.update({f"{variant_wheel_dir(name)}/{w.name}": w.read_bytes() for w in (pip, *wheels)})
        files.update({f"certs/corral-{i:02d}.crt": data for i, data in enumerate(self._certs)})
        labels = {
            "corral.kind": "runtime", "corral.version": inputs.corral_version, "corral.base": self.base_name,
            "corral.base-id": inputs.base_image_id, "corral.executor-digest": inputs.executor_digest[:16],
            VARIANTS_LABEL: ",".join(inputs.variants), "corral.uid": str(inputs.uid),
            "corral.init": "tini" if self.facts.tini else "engine",
        }
        return BuildContext(dockerfile=inputs.dockerfile, files=files, labels=labels, trees=self._trees,
                            build_args={"CORRAL_UID": str(inputs.uid), "CORRAL_GID": str(inputs.gid)})


async def _plan(docker: aiodocker.Docker, base_name: str, variants: tuple[Variant, ...], *, uid: int, gid: int,
                certs: list[bytes], cache: Path, progress: ProgressFn | None) -> _Plan:
    facts = await probe_base(docker, base_name, cache_dir=cache, progress=progress)
    wheelhouse = Wheelhouse(cache, progress=progress)
    wheels = await wheelhouse.tool_wheels(facts)
    variant_wheels = {v.name: await wheelhouse.requirement_wheels(v.wheels, facts) for v in variants if v.wheels}
    trees: dict[str, str] = {}
    made: list[tuple[str, str]] = []
    for variant in variants:
        for name in variant.host_files:
            found = await host_files(name, cache, progress)
            trees[f"{variant_files_dir(variant.name)}/{name}"] = str(found.path)
            made.append((name, found.digest))
    root = source_root()
    # FROM the image id: the tag names exactly the base it was built on, whatever the name points at later.
    dockerfile = render_dockerfile(base=facts.image_id, pip_wheel=wheels[0].name, tini=facts.tini, variants=variants,
                                   ca_certs=bool(certs))
    inputs = TagInputs(
        corral_version=corral_version(), base_image_id=facts.image_id,
        executor_digest=await asyncio.to_thread(executor_source_digest, root),
        wheels=tuple((w.name, sha256_file(w)) for w in (*wheels, *(w for v in variant_wheels.values() for w in v))),
        dockerfile=dockerfile, variants=tuple(sorted(v.name for v in variants)), uid=uid, gid=gid,
        ca_certs=tuple(hashlib.sha256(c).hexdigest() for c in certs), host_files=tuple(made),
    )
    return _Plan(tag=runtime_tag(inputs), inputs=inputs, base_name=base_name, facts=facts, wheels=wheels,
                 variant_wheels=variant_wheels, certs=certs, wheelhouse=wheelhouse, root=root, trees=trees)


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _lock(tag: str) -> asyncio.Lock:
    """One build per tag at a time in this process (a second caller then finds the image)."""
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(tag, asyncio.Lock())


def _read_cert(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read CA certificate {path}: {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ImageError(f"{path} is not a PEM certificate (no BEGIN CERTIFICATE line)")
    return data if data.endswith(b"\n") else data + b"\n"
