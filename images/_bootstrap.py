"""The base image, made locally: debootstrap a minimal Debian with python3, import it into the engine.

No registry is involved. The rootfs is cached as a tarball under the cache directory, so a
second bootstrap (or a bootstrap on a fresh engine) only re-imports it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import shutil
import time
from typing import AsyncIterator
import urllib.parse

import aiodocker
from aiodocker.exceptions import DockerError
from aiodocker.jsonstream import json_stream_stream
import msgspec

from ._engine import ENGINE_UNREACHABLE, engine_errors, image_inspect
from ._errors import BootstrapError, DebootstrapMissing
from ._proc import stream_process
from ._progress import ProgressFn, reporter

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
BASE_REPOSITORY = "corral-base"
BASE_PACKAGES = ("python3", "python3-venv", "tini", "ca-certificates")
CACHE_ENV = "CORRAL_CACHE_DIR"

# Left out of the image: kernel filesystems, package caches and indexes, manuals.
_TAR_EXCLUDES = (
    "./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*",
    "./var/cache/apt/archives/*.deb", "./var/cache/apt/*.bin", "./var/lib/apt/lists/*",
    "./var/log/*", "./usr/share/man/*", "./usr/share/info/*",
)
_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)


def default_cache_dir() -> Path:
    """$CORRAL_CACHE_DIR, else /var/cache/corral when writable (root), else ~/.cache/corral."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env)
    system = Path("/var/cache/corral")
    if os.access(system if system.exists() else system.parent, os.W_OK):
        return system
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "corral"


def base_image_name(suite: str = DEFAULT_SUITE) -> str:
    return f"{BASE_REPOSITORY}:{suite}"


class BootstrapConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    cache_dir: str = ""
    """Empty: :func:`default_cache_dir`."""
    packages: tuple[str, ...] = BASE_PACKAGES

    @property
    def image(self) -> str:
        return base_image_name(self.suite)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


async def bootstrap_base_image(docker: aiodocker.Docker, config: BootstrapConfig = BootstrapConfig(), *,
                               progress: ProgressFn | None = None, refresh: bool = False) -> str:
    """Make ``corral-base:<suite>`` from a cached (or fresh) debootstrap rootfs; returns the image name.

    An existing image is kept (re-importing would give it a new id, and so new runtime tags);
    ``refresh`` discards the image, the cached tarball and the rootfs and runs debootstrap again.
    """
    if not refresh and (found := await image_inspect(docker, config.image)) is not None:
        reporter(progress)("bootstrap", f"{config.image} exists ({found['Id'][:19]}); --refresh makes it again")
        return config.image
    tarball = await rootfs_tarball(config, progress=progress, refresh=refresh)
    await import_rootfs(docker, tarball, config.image, labels={"corral.kind": "base", "corral.suite": config.suite},
                        progress=progress)
    return config.image


async def rootfs_tarball(config: BootstrapConfig, *, progress: ProgressFn | None = None, refresh: bool = False) -> Path:
    """The cached rootfs tarball of ``config.suite``, made by debootstrap when missing."""
    report = reporter(progress)
    cache = config.cache_path
    tarball = cache / f"{config.suite}-minbase.tar"
    if refresh:
        await asyncio.to_thread(_remove, tarball, cache / f"rootfs-{config.suite}")
    if tarball.exists():
        report("bootstrap", f"reusing cached rootfs tarball {tarball}")
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    candidates = [] if refresh else _rootfs_candidates(cache, config.suite)
    rootfs = next((d for d in candidates if _is_complete(d, config)), None)
    if rootfs is None:
        rootfs = await run_debootstrap(config, progress=progress)
    else:
        report("bootstrap", f"reusing debootstrapped rootfs {rootfs}")
    report("bootstrap", f"packing {rootfs} into {tarball}")
    partial = tarball.with_suffix(".tar.partial")
    excludes = [f"--exclude={pattern}" for pattern in _TAR_EXCLUDES]
    code, tail = await _run(["tar", "--numeric-owner", "-C", str(rootfs), *excludes, "-cf", str(partial), "."],
                                       stage="bootstrap", progress=progress)
    if code != 0:
        raise BootstrapError(f"packing the rootfs failed (tar exited with {code})", log_tail=tail)
    partial.rename(tarball)
    return tarball


async def run_debootstrap(config: BootstrapConfig, *, progress: ProgressFn | None = None) -> Path:
    """debootstrap --variant=minbase into the cache; its output streams as ``bootstrap`` progress."""
    if shutil.which("debootstrap") is None:
        raise DebootstrapMissing()
    if os.geteuid() != 0:
        raise BootstrapError("debootstrap needs root: run `sudo corral image bootstrap`")
    target = config.cache_path / f"rootfs-{config.suite}"
    partial = target.with_name(target.name + ".partial")
    await asyncio.to_thread(_remove, partial, target)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(config.packages)}",
            config.suite, str(partial), config.mirror]
    reporter(progress)("bootstrap", " ".join(argv))
    started = time.monotonic()
    code, tail = await _run(argv, stage="bootstrap", progress=progress)
    if code != 0:
        raise BootstrapError(f"debootstrap exited with {code}", log_tail=tail)
    partial.rename(target)
    reporter(progress)("bootstrap", f"debootstrap finished in {time.monotonic() - started:.0f}s")
    return target


async def import_rootfs(docker: aiodocker.Docker, tarball: Path, image: str, *, labels: dict[str, str],
                        progress: ProgressFn | None = None) -> str:
    """Stream a rootfs tarball into the engine (POST /images/create?fromSrc=-); returns the image id."""
    report = reporter(progress)
    repo, _, tag = image.rpartition(":")
    changes = [*_IMAGE_CHANGES, "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    query = urllib.parse.urlencode([("fromSrc", "-"), ("repo", repo), ("tag", tag), *(("changes", c) for c in changes)])
    report("import", f"importing {tarball} ({tarball.stat().st_size / 1e6:.0f} MB) as {image}")
    with engine_errors(f"importing {image}"):
        try:
            async with docker._query(f"images/create?{query}", "POST", data=_read_chunks(tarball), chunked=True,
                                     headers={"Content-Type": "application/x-tar"}, timeout=None) as response:
                async for item in json_stream_stream(response):
                    if status := item.get("status"):
                        report("import", str(status))
        except DockerError as exc:
            if exc.status == ENGINE_UNREACHABLE:
                raise
            raise BootstrapError(f"the engine refused the rootfs of {image}: {exc.message}") from exc
    found = await image_inspect(docker, image)
    if found is None:
        raise BootstrapError(f"the engine accepted the rootfs but has no image {image!r}")
    report("import", f"{image} is {found['Id']}")
    return found["Id"]


async def _read_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


async def _run(argv: list[str], *, stage: str, progress: ProgressFn | None) -> tuple[int, tuple[str, ...]]:
    try:
        return await stream_process(argv, stage=stage, progress=progress)
    except FileNotFoundError as exc:
        raise BootstrapError(f"cannot run {argv[0]}: {exc}") from exc


def _rootfs_candidates(cache: Path, suite: str) -> list[Path]:
    # ``rootfs`` is where a rootfs made by hand (see docs) is picked up.
    return [cache / f"rootfs-{suite}", cache / "rootfs"]


def _is_complete(rootfs: Path, config: BootstrapConfig) -> bool:
    """A finished debootstrap of this suite with every requested package installed."""
    if not rootfs.is_dir() or (rootfs / "debootstrap").exists():
        return False
    try:
        release = (rootfs / "etc/os-release").read_text()
        status = (rootfs / "var/lib/dpkg/status").read_text()
    except OSError:
        return False
    if f"VERSION_CODENAME={config.suite}" not in release.splitlines():
        return False
    installed = {block.split("\n", 1)[0].removeprefix("Package: ") for block in status.split("\n\n")
                 if "Status: install ok installed" in block}
    return all(p in installed for p in config.packages)


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
