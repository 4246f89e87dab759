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

from ._base import BaseFacts
from ._dockerfile import PACKAGE_DIR
from ._errors import BuildFailed, ImageError
from ._proc import stream_process
from ._progress import ProgressFn, reporter

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
        abi = "cp" + facts.python.replace(".", "")
        target = self._dir / f"{abi}-{facts.machine}-glibc{facts.glibc}"
        major, minor = (int(x) for x in facts.glibc.split(".")[:2])
        platforms = [f"manylinux_{major}_{m}_{facts.machine}" for m in range(minor, 4, -1)]
        platforms += [f"{legacy}_{facts.machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]
        flags = ["--python-version", facts.python, "--implementation", "cp", "--abi", abi]
        for platform in platforms:
            flags += ["--platform", platform]
        msgspec = await self._download(target, f"msgspec-{msgspec_version}-{abi}-*.whl",
                                       [*flags, f"msgspec=={msgspec_version}"])
        return pip, msgspec

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
