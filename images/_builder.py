"""RuntimeBuilder: the interface a sandbox backend builds images through, and its Docker implementation."""

from __future__ import annotations

import abc
import asyncio
import collections
import io
import json
import os
import tarfile
import tempfile
import time
from typing import IO, Mapping, Sequence

import aiodocker
from aiodocker.exceptions import DockerError, DockerStreamError
import msgspec

from ._engine import ENGINE_UNREACHABLE, engine_errors, image_inspect
from ._errors import BuildFailed, EngineUnavailable
from ._progress import ProgressFn, reporter

# Predefined build args of the engine: passed through from the host, never stored in the image.
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "ftp_proxy", "no_proxy")


class BuildContext(msgspec.Struct, frozen=True, kw_only=True):
    """A build context held in memory: the Dockerfile, the files it COPYs, build args and labels."""

    dockerfile: str
    files: dict[str, bytes] = {}
    """Path inside the context -> content."""
    trees: dict[str, str] = {}
    """Path inside the context -> a host directory put there whole, modes and symlinks kept (a
    variant's host files: read while the tar is written, never held in memory)."""
    build_args: dict[str, str] = {}
    labels: dict[str, str] = {}

    def to_tar(self) -> bytes:
        """A reproducible tar of the context (fixed mtimes and owners)."""
        buf = io.BytesIO()
        self.write_tar(buf)
        return buf.getvalue()

    def write_tar(self, fileobj: IO[bytes]) -> None:
        """Write the context's tar to ``fileobj`` (blocking: the trees are read from disk)."""
        dockerfile = self.dockerfile
        if self.labels:  # one LABEL instruction (the API's labels parameter makes one build step per label)
            dockerfile = dockerfile.rstrip("\n") + "\nLABEL " + " ".join(
                f"{k}={json.dumps(v)}" for k, v in sorted(self.labels.items())) + "\n"
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in sorted({"Dockerfile": dockerfile.encode(), **self.files}.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
            for name, path in sorted(self.trees.items()):
                tar.add(path, arcname=name, filter=_owned_by_root)


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class BuilderStatistics(msgspec.Struct, frozen=True, kw_only=True):
    builds: int
    """Builds started by this builder (reused tags are not builds)."""
    last_build_s: float | None


class RuntimeBuilder(abc.ABC):
    """Builds and finds runtime images for one kind of sandbox engine."""

    @abc.abstractmethod
    async def build(self, context: BuildContext, tags: Sequence[str], platform: str | None = None,
                    extra_build_args: Mapping[str, str] | None = None) -> str:
        """Build ``context`` and name it with every tag; returns the first tag."""

    @abc.abstractmethod
    async def image_exists(self, name: str, pull_from_repo: bool = False) -> bool:
        """Whether ``name`` exists locally (or, with ``pull_from_repo``, could be pulled)."""


class DockerRuntimeBuilder(RuntimeBuilder):
    """Builds with the engine's build API (classic builder), streaming the build log as progress."""

    def __init__(self, docker: aiodocker.Docker, *, progress: ProgressFn | None = None) -> None:
        self._docker = docker
        self._progress = progress
        self._builds = 0
        self._last_build_s: float | None = None

    def statistics(self) -> BuilderStatistics:
        return BuilderStatistics(builds=self._builds, last_build_s=self._last_build_s)

    async def image_exists(self, name: str, pull_from_repo: bool = False) -> bool:
        if await image_inspect(self._docker, name) is not None:
            return True
        if not pull_from_repo:
            return False
        try:
            await self._docker.images.pull(name)
        except DockerError as exc:
            if exc.status == ENGINE_UNREACHABLE:
                raise EngineUnavailable(exc.message) from exc
            reporter(self._progress)("build", f"pulling {name} failed: {exc.message}")
            return False
        return True

    async def build(self, context: BuildContext, tags: Sequence[str], platform: str | None = None,
                    extra_build_args: Mapping[str, str] | None = None) -> str:
        if not tags:
            raise ValueError("build needs at least one tag")
        report = reporter(self._progress)
        build_args = {k: v for k, v in os.environ.items() if k in PROXY_ARGS}
        build_args.update(context.build_args)
        build_args.update(extra_build_args or {})
        tail: collections.deque[str] = collections.deque(maxlen=30)
        self._builds += 1
        started = time.monotonic()
        report("build", f"building {tags[0]}")
        try:
            with engine_errors(f"building {tags[0]}"):
                try:
                    with tempfile.TemporaryFile() as tar:
                        await asyncio.to_thread(context.write_tar, tar)
                        tar.seek(0)
                        stream = self._docker.images.build(
                            fileobj=tar, encoding="identity", tag=tags[0], rm=True, forcerm=True,
                            buildargs=build_args, platform=platform, stream=True, timeout=None)
                        async for item in stream:
                            for line in _log_lines(item):
                                tail.append(line)
                                report("build", line)
                except DockerStreamError as exc:
                    raise BuildFailed(f"building {tags[0]} failed: {exc.message}", log_tail=tuple(tail)) from exc
                for extra in tags[1:]:
                    repo, _, tag = extra.rpartition(":")
                    await self._docker.images.tag(tags[0], repo or extra, tag=tag or None)
        finally:
            self._last_build_s = time.monotonic() - started
        if await image_inspect(self._docker, tags[0]) is None:
            raise BuildFailed(f"the engine finished building but has no image {tags[0]!r}", log_tail=tuple(tail))
        return tags[0]


def _log_lines(item: Mapping[str, object]) -> list[str]:
    if isinstance(text := item.get("stream"), str):
        return [line for line in text.rstrip("\n").split("\n") if line.strip()]
    if isinstance(status := item.get("status"), str):
        return [status]
    return []
