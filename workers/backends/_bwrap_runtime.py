"""What the executor runs on inside a bubblewrap sandbox: an interpreter and a read-only package copy.

A root worker runs its sandboxes as an unprivileged host user, which often cannot read the
worker's own files: pyenv's interpreter under /root (mode 0700), a checkout and its venv under
/root or a private /tmp directory. So the sandbox does not see the worker's tree at all. It gets

* an **executor runtime**: a copy of the only packages the executor imports (``protocol``,
  ``executor`` and ``msgspec``) and the sandbox's synthetic /etc
  files (passwd, group, hosts, ...), byte-compiled, root-owned and
  world-readable, in a directory named by the hash of its contents (a running sandbox keeps the
  files it started with while a newer worker builds another), bound read-only at ``RUNTIME_MOUNT``.
  Sessions with plugins that need Python modules (the kernel, the agent skills) get a second
  runtime that also carries those modules: corral's own (``corral_skills``) copied like
  ``executor``, any other as every file its installed distribution recorded, with the same for
  everything it requires (``images.installed_closure``), compiled extensions and their ``*.libs``
  included. Those files keep their mtimes, so the ``__pycache__`` pip wrote at install time stays
  valid and nothing is byte-compiled again;
* an **interpreter** of the worker's ``major.minor`` (msgspec's extension is built for that ABI):
  the worker's own when the sandbox user can read it, else the system's ``/usr/bin/pythonX.Y``
  (Debian's ``python3``), else a clear error.

The executor starts as ``python -I -S RUNTIME_MOUNT/corral_executor.py``: isolated from the
environment and from site-packages, so nothing of the host's Python setup leaks in.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
import py_compile
import shutil
import sys
import time

import msgspec

import executor
import protocol
from protocol import codes

from ._base import BackendError
from ._bwrap_host import readable_by

RUNTIME_MOUNT = "/run/corral"
LAUNCHER = "corral_executor.py"
LAUNCHER_SOURCE = '''\
"""Start the corral executor from this read-only runtime directory (see workers/backends/_bwrap_runtime.py).

Usage: corral_executor.py FD, FD an inherited pipe holding the executor's JSON configuration (read
from the fd itself: the worker made the pipe, and a sandbox user may not reopen it by path).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with os.fdopen(int(sys.argv.pop(1)), "rb") as config:
    os.environ["CORRAL_EXECUTOR_CONFIG"] = config.read().decode()  # main() takes it out before any shell starts
from executor.__main__ import main

main()
'''


class ExecutorPython(msgspec.Struct, frozen=True, kw_only=True):
    """The interpreter a sandbox's executor runs and the host directories to bind for it."""

    executable: str
    binds: tuple[str, ...] = ()
    """Host directories to bind read-only at the same path (empty: the interpreter is under the root)."""


def runtime_sources(own: tuple[Path, ...] = ()) -> list[tuple[str, Path]]:
    """(path inside the runtime, host file) for every file the executor can import, and those of
    the packages of corral's own tree in ``own`` (their directories)."""
    files: list[tuple[str, Path]] = []
    roots = [(Path(protocol.__file__).parent, ("*.py",)), (Path(executor.__file__).parent, ("*.py",)),
             (Path(msgspec.__file__).parent, ("*.py", "*.so")), *[(root, ("*.py",)) for root in own]]
    for root, patterns in roots:
        for pattern in patterns:
            files += [(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in root.rglob(pattern)
                      if "__pycache__" not in p.parts]
    return sorted(files)


def module_sources(modules: tuple[str, ...]) -> tuple[tuple[Path, ...], list[tuple[str, Path]]]:
    """What a runtime needs to import ``modules`` (blocking): (the package directories of those in
    corral's own tree, (path inside the runtime, host file) of every file of the installed
    distributions that provide the others and of all they require, markers evaluated for this
    interpreter). BackendError ``plugin_unavailable`` for a module neither provides."""
    from images import installed_closure  # the image builder's walk of the host's distributions

    providers = importlib.metadata.packages_distributions()
    own: list[Path] = []
    wanted: list[str] = []
    for module in modules:
        dists = [d for d in providers.get(module, []) if d.lower() != "corral"]  # corral itself: its own tree
        if dists:
            wanted += dists
            continue
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise BackendError(f"the Python module {module!r} is neither a package of corral's own tree nor provided "
                               "by a distribution installed for the worker's interpreter, so bubblewrap sandboxes "
                               "cannot get a copy of it", codes.PLUGIN_UNAVAILABLE)
        own.append(Path(next(iter(spec.submodule_search_locations))))
    found, missing = installed_closure(tuple(dict.fromkeys(wanted)))
    if missing:
        raise BackendError(f"the worker's interpreter lacks {', '.join(missing)}, which bubblewrap sandboxes "
                           f"would need for {', '.join(modules)}", codes.PLUGIN_UNAVAILABLE)
    files: dict[str, Path] = {}
    for name, dist in sorted(found.items()):
        if dist.files is None:
            raise BackendError(f"the distribution {name!r} lists no files (it has no RECORD: installed by "
                               "something other than pip), so it cannot be copied into bubblewrap sandboxes",
                               codes.PLUGIN_UNAVAILABLE)
        for entry in dist.files:
            if entry.parts and entry.parts[0] == "..":
                continue  # scripts and data outside site-packages (bin/ipython, share/jupyter)
            path = Path(dist.locate_file(entry))
            if path.is_file():
                files[entry.as_posix()] = path
    return tuple(own), sorted(files.items())


def build_runtime(parent: Path, etc: dict[str, str], modules: tuple[str, ...] = ()) -> Path:
    """The runtime directory for the current sources under ``parent``, made once (blocking: run in a thread).

    ``etc`` are the sandbox's synthetic /etc files (passwd, hosts, ...), kept in the runtime's ``etc/``;
    ``modules`` the Python modules of plugins it carries besides the executor's own (see ``module_sources``)."""
    own, installed = module_sources(modules) if modules else ((), [])
    sources = runtime_sources(own)
    digest = hashlib.sha256(sys.version.encode() + b"\0" + LAUNCHER_SOURCE.encode())
    for name, text in sorted(etc.items()):
        digest.update(f"etc/{name}\0{text}\0".encode())
    for name, path in [*sources, *installed]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = parent / f"executor-{digest.hexdigest()[:16]}"
    if (target / LAUNCHER).exists():
        return target
    _prune(parent)
    parent.mkdir(parents=True, exist_ok=True)
    os.chmod(parent, 0o755)
    staging = parent / f".{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for name, path in sources:
        dest = staging / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    for name, path in installed:
        dest = staging / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)  # the mtime too: the copied __pycache__ stays valid for the copied source
    (staging / LAUNCHER).write_text(LAUNCHER_SOURCE)
    (staging / "etc").mkdir()
    for name, text in etc.items():
        (staging / "etc" / name).write_text(text)
    for name in [LAUNCHER, *(n for n, _ in sources if n.endswith(".py"))]:
        # the sandbox cannot write __pycache__: start without compiling
        py_compile.compile(str(staging / name), doraise=True)
    _make_world_readable(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another worker on this host made the same runtime first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _prune(parent: Path, min_age_s: float = 86400.0) -> None:
    """Remove runtimes older than a day that no running process names (sandboxes of older versions)."""
    old = [p for p in parent.glob("executor-*") if time.time() - p.stat().st_mtime > min_age_s]
    if not old:
        return
    in_use = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        in_use.update(p for p in old if str(p).encode() in text)
    for path in old:
        if path not in in_use:
            shutil.rmtree(path, ignore_errors=True)


def _make_world_readable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            executable = name.endswith(".so") or os.stat(path).st_mode & 0o111
            os.chmod(path, 0o755 if executable else 0o644)


def executor_python(uid: int, gid: int, root: str = "/") -> ExecutorPython:
    """The interpreter for the executor: the worker's own if the sandbox user can read it, else the system's.

    ``root`` is what the sandbox sees at / (the host's, or an image rootfs)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    own = os.path.realpath(sys.executable)
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    if readable_by(own, uid, gid, execute=True) and readable_by(stdlib, uid, gid, execute=True):
        base = os.path.realpath(sys.base_prefix)
        return ExecutorPython(executable=own, binds=_covering([base, os.path.dirname(own), stdlib]))
    system = f"/usr/bin/python{version}"
    host_path = os.path.join(root, system.lstrip("/"))
    if os.path.isfile(host_path) and readable_by(host_path, uid, gid, execute=True):
        return ExecutorPython(executable=system)
    raise BackendError(
        f"the sandbox user (uid {uid}) can read no Python {version}: not the worker's ({own}, under a directory it "
        f"cannot enter) and {system} is missing from {root!r}. Install Debian's python3 (`apt-get install "
        f"python3`, {version} on Debian 12) or run the worker with a Python {version} outside private directories")


def _covering(paths: list[str]) -> tuple[str, ...]:
    """The paths, without those inside another one."""
    ordered = sorted(set(paths), key=len)
    return tuple(p for i, p in enumerate(ordered) if not any(p == q or p.startswith(q.rstrip("/") + "/")
                                                          for q in ordered[:i]))
