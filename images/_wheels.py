"""The host-side wheelhouse: everything the image installs, fetched or built on the host.

Containers may not reach PyPI (or only through a proxy they do not trust), so the image build
never downloads: the host builds corral's wheel and downloads the wheels of msgspec (for the
base image's Python, machine and glibc) and of pip (to install them), caching all of them.
"""

from __future__ import annotations

import asyncio
from fnmatch import fnmatch
import hashlib
import importlib.metadata
import os
from pathlib import Path
import shutil
import sys
import tempfile
import tomllib

import msgspec

from ._base import BaseFacts
from ._dockerfile import PACKAGE_DIR
from ._errors import BuildFailed, ImageError
from ._proc import stream_process
from ._progress import ProgressFn, reporter

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.markers import default_environment  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

SOURCE_ENV = "CORRAL_SOURCE_DIR"


def source_root() -> Path:
    """The corral source tree this process runs from ($CORRAL_SOURCE_DIR overrides)."""
    root = Path(os.environ.get(SOURCE_ENV) or PACKAGE_DIR.parent)
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        project = {}
    if project.get("name") != "corral":
        raise ImageError(f"building the runtime image needs corral's source tree; {root} has no corral pyproject.toml "
                         f"(set {SOURCE_ENV} to a checkout)")
    return root


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Wheelhouse:
    """Wheels cached under ``<cache_dir>/wheelhouse``; only the first use of a target downloads."""

    def __init__(self, cache_dir: Path, *, progress: ProgressFn | None = None) -> None:
        self._dir = cache_dir / "wheelhouse"
        self._progress = progress

    async def tool_wheels(self, facts: BaseFacts) -> tuple[Path, Path]:
        """(pip wheel, msgspec wheel) matching the host's versions, msgspec built for the base image."""
        pip_version = importlib.metadata.version("pip")
        msgspec_version = importlib.metadata.version("msgspec")
        pip_dir = self._dir / "any"
        pip = await self._download(pip_dir, f"pip-{pip_version}-*.whl", [f"pip=={pip_version}"])
        abi = _abi(facts)
        target = self._dir / f"{abi}-{facts.machine}-glibc{facts.glibc}"
        msgspec = await self._download(target, f"msgspec-{msgspec_version}-{abi}-*.whl",
                                       [*_target_flags(facts, abis=(abi,)), f"msgspec=={msgspec_version}"])
        return pip, msgspec

    async def requirement_wheels(self, requirements: tuple[str, ...], facts: BaseFacts) -> tuple[Path, ...]:
        """Wheels of ``requirements`` and everything they depend on, for the base image.

        What the host has installed is pinned to the host's version (host and image agree), with
        its own dependencies followed the same way; the rest is resolved by pip for the base, under
        the host's pins. Cached per requirement set and base: only the first call downloads. A
        pure-Python package published only as an sdist is built into a wheel on the host.
        """
        plan = pin_closure(requirements, facts)
        key = hashlib.sha256(msgspec.json.encode([plan, facts.python, facts.machine, facts.glibc])).hexdigest()[:16]
        directory = self._dir / "requirements" / key
        manifest = directory / "wheels.json"
        if manifest.exists():
            reporter(self._progress)("wheelhouse", f"reusing {len(plan.pinned) + len(plan.unpinned)} requirement(s) "
                                                   f"for {' '.join(requirements)} from {directory}")
            return tuple(directory / name for name in msgspec.json.decode(manifest.read_bytes(), type=list[str]))
        # Two builders filling the same wheelhouse at once each use their own directory, and
        # whichever finishes second keeps the first one's.
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f"{directory.name}.partial-"))
        flags = _target_flags(facts, abis=(_abi(facts), "abi3", "none"))
        if plan.pinned:
            await self._pip(["download", "--no-deps", "--dest", str(partial), *flags, *plan.pinned],
                            what=" ".join(requirements))
        if plan.unpinned:
            constraints = partial / "constraints.txt"
            constraints.write_text("".join(f"{pin}\n" for pin in plan.pinned))
            await self._pip(["download", "--only-binary=:all:", "--dest", str(partial),
                             "--constraint", str(constraints), *flags, *plan.unpinned], what=" ".join(plan.unpinned))
            constraints.unlink()
        for sdist in sorted([*partial.glob("*.tar.gz"), *partial.glob("*.zip")]):
            await self._pip(["wheel", "--no-deps", "--wheel-dir", str(partial), str(sdist)], what=sdist.name)
            sdist.unlink()
        wheels = sorted(p.name for p in partial.glob("*.whl"))
        if impure := [w for w in wheels if not _fits(w, facts)]:
            raise BuildFailed(f"no wheel for the base image's Python {facts.python} on {facts.machine}: "
                              f"{', '.join(impure)} (built on the host from an sdist)")
        (partial / "wheels.json").write_bytes(msgspec.json.encode(wheels))
        try:
            partial.rename(directory)
        except OSError:  # another builder finished first: its wheels are the same ones
            await asyncio.to_thread(shutil.rmtree, partial, True)
            return tuple(directory / name for name in msgspec.json.decode(manifest.read_bytes(), type=list[str]))
        return tuple(directory / name for name in wheels)

    async def _pip(self, args: list[str], *, what: str) -> None:
        argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
        reporter(self._progress)("wheelhouse", " ".join(argv[1:]))
        code, tail = await stream_process(argv, stage="wheelhouse", progress=self._progress)
        if code != 0:
            raise BuildFailed(f"pip {args[0]} of {what} for the wheelhouse failed (pip exited with {code})",
                              log_tail=tail)

    async def _download(self, directory: Path, pattern: str, args: list[str]) -> Path:
        if found := sorted(directory.glob(pattern)):
            return found[0]
        directory.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                "--only-binary=:all:", "--dest", str(directory), *args]
        reporter(self._progress)("wheelhouse", " ".join(argv[1:]))
        code, tail = await stream_process(argv, stage="wheelhouse", progress=self._progress)
        found = sorted(directory.glob(pattern))
        if code != 0 or not found:
            raise BuildFailed(f"downloading {args[-1]} into the wheelhouse failed (pip exited with {code})", log_tail=tail)
        return found[0]

    async def corral_wheel(self, root: Path, *, key: str) -> Path:
        """corral's own wheel (pip wheel --no-deps) built from a clean copy of ``root``; cached by ``key``."""
        directory = self._dir / "corral" / key
        if found := sorted(directory.glob("corral-*.whl")):
            return found[0]
        with tempfile.TemporaryDirectory(prefix="corral-wheel-") as tmp:
            # Build from a copy: an in-tree build would leave build/ behind in the checkout.
            src = Path(tmp) / "src"
            await asyncio.to_thread(_copy_sources, root, src)
            out = Path(tmp) / "out"
            argv = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                    "--wheel-dir", str(out), str(src)]
            reporter(self._progress)("wheelhouse", f"building corral's wheel from {root}")
            code, tail = await stream_process(argv, stage="wheelhouse", progress=self._progress)
            built = sorted(out.glob("corral-*.whl"))
            if code != 0 or not built:
                raise BuildFailed(f"building corral's wheel failed (pip exited with {code})", log_tail=tail)
            directory.mkdir(parents=True, exist_ok=True)
            final = directory / built[0].name
            shutil.copyfile(built[0], final.with_suffix(".partial"))
            final.with_suffix(".partial").rename(final)
            return final


class PinnedRequirements(msgspec.Struct, frozen=True, array_like=True):
    pinned: tuple[str, ...]
    """``name==version`` of what the host has installed, the closure of the requirements through it."""
    unpinned: tuple[str, ...]
    """Requirements the host does not satisfy, left to pip (under the pins)."""


def pin_closure(requirements: tuple[str, ...], facts: BaseFacts) -> PinnedRequirements:
    """Follow ``requirements`` through the host's installed distributions, markers evaluated for the base."""
    environment = {"python_version": facts.python, "python_full_version": f"{facts.python}.0",
                   "platform_machine": facts.machine, "sys_platform": "linux", "platform_system": "Linux",
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    installed, unpinned = installed_closure(requirements, environment)
    return PinnedRequirements(pinned=tuple(sorted(f"{name}=={dist.version}" for name, dist in installed.items())),
                              unpinned=unpinned)


def installed_closure(requirements: tuple[str, ...], environment: dict[str, str] | None = None,
                      ) -> tuple[dict[str, importlib.metadata.Distribution], tuple[str, ...]]:
    """The installed distributions that satisfy ``requirements`` and, recursively, their own requirements
    (markers evaluated for ``environment``, default this interpreter's), by canonical name; and the
    requirements nothing installed satisfies."""
    environment = environment if environment is not None else default_environment()
    found: dict[str, importlib.metadata.Distribution] = {}
    unsatisfied: dict[str, None] = {}
    queue = [Requirement(r) for r in requirements]
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            unsatisfied[str(req)] = None
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            unsatisfied[str(req)] = None
            continue
        found[name] = dist
        for raw in dist.requires or ():
            dep = Requirement(raw)
            extras = ("", *req.extras)
            if dep.marker is None or any(dep.marker.evaluate({**environment, "extra": e}) for e in extras):
                dep.marker = None
                queue.append(dep)
    return found, tuple(unsatisfied)


def _abi(facts: BaseFacts) -> str:
    return "cp" + facts.python.replace(".", "")


def _target_flags(facts: BaseFacts, *, abis: tuple[str, ...]) -> list[str]:
    """pip's --python-version/--platform/--abi flags for wheels that run on the base image."""
    major, minor = (int(x) for x in facts.glibc.split(".")[:2])
    platforms = [f"manylinux_{major}_{m}_{facts.machine}" for m in range(minor, 4, -1)]
    platforms += [f"{legacy}_{facts.machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]
    flags = ["--python-version", facts.python, "--implementation", "cp"]
    for abi in abis:
        flags += ["--abi", abi]
    for platform in platforms:
        flags += ["--platform", platform]
    return flags


def _fits(wheel: str, facts: BaseFacts) -> bool:
    """Whether a wheel's tags suit the base: pure Python, or downloaded for its platform by pip (an
    ``abi`` of ``none`` is Python-independent code with a native part, e.g. Playwright's node driver)."""
    _python, abi, platform = wheel.removesuffix(".whl").split("-")[-3:]
    if platform == "any":
        return True
    return "linux" in platform and facts.machine in platform and abi in ("abi3", "none", _abi(facts))


def _copy_sources(root: Path, dest: Path) -> None:
    """pyproject.toml, the readme and the packages named by [tool.setuptools.packages.find]."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    include = pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include", ["*"])
    dest.mkdir(parents=True)
    for path in root.iterdir():
        if path.is_file() and (path.name == "pyproject.toml" or path.name.startswith("README")):
            shutil.copy2(path, dest / path.name)
        elif path.is_dir() and (path / "__init__.py").exists() and any(fnmatch(path.name, p) for p in include):
            shutil.copytree(path, dest / path.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
