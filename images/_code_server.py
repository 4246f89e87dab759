"""code-server on the host: ``npm install``ed once into the cache, reused by the image and local sandboxes.

``install_code_server`` fills ``<cache>/code-server/<version>`` (an *install root*: the layout
``executor._code_server`` reads, which cannot be imported from here) with the pinned code-server from the npm registry, its native modules
built by the host's node (node-gyp: python3, make, g++ and libkrb5-dev for ``kerberos``), and a copy
of that node. Nothing is fetched from GitHub: code-server's ``@vscode/ripgrep`` would download
its binary from there, so its download cache is seeded with the host's ``rg`` (Debian's
``ripgrep``, 13.0.0 like VS Code's). The root is made in a staging directory and renamed into place
with its stamp written last, under a lock: a second caller waits, then reuses it.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
from pathlib import Path
import shutil
import tarfile
import time
from typing import Callable

import msgspec

from ._bootstrap import default_cache_dir
from ._errors import ImageError
from ._proc import stream_process
from ._progress import ProgressFn, reporter

CODE_SERVER_VERSION = "4.100.3"
"""Pinned: the newest code-server whose engine is node 20 (the host's; later ones need node 22+)."""
NODE_MAJOR = 20
STAMP = "install.json"
ENTRY = "node_modules/code-server/out/node/entry.js"
NODE = "node/bin/node"
"""The install root's layout, as the executor's ``vscode`` plugin reads it."""
RIPGREP_PACKAGE = "1.15.11"
"""@vscode/ripgrep as code-server's shrinkwrap pins it, and the asset its postinstall looks for."""
RIPGREP_ASSET = "ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
BUILD_TOOLS_HINT = ("code-server's native modules are built on the host: apt-get install python3 make g++ "
                    "pkg-config libkrb5-dev ripgrep (./dev setup does)")


class InstallStamp(msgspec.Struct, frozen=True, kw_only=True):
    """``install.json``: what was installed, with which node, how long it took, how big it is."""

    version: str
    node_version: str
    seconds: float = 0.0
    bytes: int = 0


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The install root of the pinned version in corral's cache."""
    return Path(cache_dir or default_cache_dir()) / "code-server" / CODE_SERVER_VERSION


def read_stamp(root: Path) -> InstallStamp | None:  # images.code_server_stamp
    """The stamp of a complete install of the pinned version at ``root``, else None."""
    try:
        stamp = msgspec.json.decode((root / STAMP).read_bytes(), type=InstallStamp)
    except (OSError, msgspec.DecodeError):
        return None
    complete = (root / ENTRY).is_file() and os.access(root / NODE, os.X_OK)
    return stamp if complete and stamp.version == CODE_SERVER_VERSION else None


def code_server_root(cache_dir: str | Path | None = None) -> Path | None:
    """The host's install root of the pinned code-server, or None when it is not installed."""
    root = cache_root(cache_dir)
    return root if read_stamp(root) is not None else None


class CodeServerInstallFailed(ImageError):
    """npm could not install code-server; ``log_tail`` has npm's last lines."""

    def __init__(self, message: str, log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message + ("\n" + "\n".join(log_tail) if log_tail else ""))
        self.log_tail = log_tail


async def install_code_server(cache_dir: str | Path | None = None, *, progress: ProgressFn | None = None) -> Path:
    """The install root of the pinned code-server in the cache, installed now if missing."""
    root = cache_root(cache_dir)
    report = reporter(progress)
    if (stamp := read_stamp(root)) is not None:
        report("reuse", f"code-server {stamp.version} is installed at {root}")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = await asyncio.to_thread(_locked, root.parent / ".lock")
    try:
        if read_stamp(root) is None:  # another process may have installed it while we waited
            await _install(root, report, progress)
    finally:
        os.close(lock)
    return root


async def _install(root: Path, report: Callable[[str, str], None], progress: ProgressFn | None) -> None:
    node, npm, rg = shutil.which("node"), shutil.which("npm"), shutil.which("rg")
    if node is None or npm is None:
        raise CodeServerInstallFailed(f"installing code-server needs node {NODE_MAJOR} and npm on the host's PATH")
    node_version = await _node_version(node)
    if not node_version.startswith(f"v{NODE_MAJOR}."):
        raise CodeServerInstallFailed(f"code-server {CODE_SERVER_VERSION} needs node {NODE_MAJOR}; the host's is "
                                      f"{node_version} ({node})")
    if rg is None:
        raise CodeServerInstallFailed("installing code-server needs the host's ripgrep (rg): " + BUILD_TOOLS_HINT)
    started = time.monotonic()
    staging = root.parent / f".staging-{CODE_SERVER_VERSION}-{os.getpid()}"
    await asyncio.to_thread(shutil.rmtree, staging, True)
    await asyncio.to_thread(_prepare_staging, staging, Path(rg))
    report("code-server", f"npm install code-server@{CODE_SERVER_VERSION} into {staging} (node {node_version})")
    env_argv = ["env", f"TMPDIR={staging / '.tmp'}", "npm_config_unsafe_perm=true", "npm_config_update_notifier=false",
                "npm_config_yes=true"]  # node-pty runs `npx node-gyp`, which would ask
    code, tail = await stream_process(
        [*env_argv, npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--foreground-scripts",
         "--prefix", str(staging), f"code-server@{CODE_SERVER_VERSION}"], stage="code-server", progress=progress)
    if code != 0:
        raise CodeServerInstallFailed(f"npm install code-server@{CODE_SERVER_VERSION} failed (exit {code}); "
                                      + BUILD_TOOLS_HINT, log_tail=tail)
    size = await asyncio.to_thread(_finish_staging, staging, Path(node))
    stamp = InstallStamp(version=CODE_SERVER_VERSION, node_version=node_version,
                         seconds=round(time.monotonic() - started, 1), bytes=size)
    (staging / STAMP).write_bytes(msgspec.json.encode(stamp))
    await asyncio.to_thread(shutil.rmtree, root, True)  # an incomplete root (no valid stamp)
    os.rename(staging, root)
    report("done", f"code-server {CODE_SERVER_VERSION} installed at {root}: {size / 1e6:.0f}MB in {stamp.seconds:.0f}s")


def _locked(path: Path) -> int:
    """An exclusive flock on ``path`` (blocking: run in a thread)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


async def _node_version(node: str) -> str:
    proc = await asyncio.create_subprocess_exec(node, "--version", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode().strip()


def _prepare_staging(staging: Path, rg: Path) -> None:
    """An npm prefix with a private TMPDIR whose ripgrep download cache holds the host's ``rg``."""
    (staging / ".tmp" / f"vscode-ripgrep-cache-{RIPGREP_PACKAGE}").mkdir(parents=True)
    (staging / "package.json").write_text('{"private": true}\n')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(rg, arcname="rg")
    (staging / ".tmp" / f"vscode-ripgrep-cache-{RIPGREP_PACKAGE}" / RIPGREP_ASSET).write_bytes(buf.getvalue())


def _finish_staging(staging: Path, node: Path) -> int:
    """Copy the node that built the native modules in, drop what only the install needed, make it
    world-readable (bubblewrap's sandbox user reads it); the root's size in bytes."""
    shutil.rmtree(staging / ".tmp", ignore_errors=True)
    for name in ("package.json", "package-lock.json"):
        (staging / name).unlink(missing_ok=True)
    dest = staging / NODE
    dest.parent.mkdir(parents=True)
    shutil.copy2(os.path.realpath(node), dest)
    total = 0
    for dirpath, dirnames, filenames in os.walk(staging):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            st = os.stat(path)
            os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)
            total += st.st_size
    return total
