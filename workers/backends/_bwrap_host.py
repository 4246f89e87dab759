"""Host-side facts and set-up for bubblewrap sandboxes: the sandbox user, nosuid mounts, private dirs.

Everything here is a small blocking call (a passwd lookup, a stat, one mount syscall): the
backend runs the mount in a thread and the rest where a few microseconds do not matter.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
import pwd
import stat

import msgspec

from ._base import BackendError

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
_KEPT_FLAGS = {"ro": 0x1, "noexec": 0x8, "noatime": 0x400, "nodiratime": 0x800, "relatime": 0x200000}
"""Per-mount flags a bind remount must restate or lose."""


class SandboxUser(msgspec.Struct, frozen=True, kw_only=True):
    """The host user that runs a backend's sandboxes (bwrap maps the sandbox's uid 1000 to it)."""

    name: str
    uid: int
    gid: int

    @property
    def is_worker(self) -> bool:
        """Sandboxes run as the worker's own user (a worker that is not root)."""
        return self.uid == os.geteuid()


def sandbox_user(name: str) -> SandboxUser:
    """Who runs the sandboxes: ``name`` when the worker is root, else the worker's own user."""
    if os.geteuid() != 0:
        return SandboxUser(name=_user_name(os.geteuid()), uid=os.geteuid(), gid=os.getegid())
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise BackendError(
            f"the bubblewrap backend runs as root but its sandbox user {name!r} does not exist, and sandboxes "
            f"must never run as host root. Create it with `./dev setup`, or `useradd --system --user-group "
            f"--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {name}`") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise BackendError(f"the bubblewrap sandbox user {name!r} has uid {entry.pw_uid} / gid {entry.pw_gid}: "
                           "it must be an unprivileged user")
    return SandboxUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def make_dir(path: Path, mode: int, owner: SandboxUser | None = None) -> None:
    """mkdir with exactly ``mode`` (umask aside), handed to ``owner`` when given (and we are root)."""
    path.mkdir(mode=mode)
    os.chmod(path, mode)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner.uid, owner.gid)


def host_memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def mount_options(path: str) -> set[str] | None:
    """The per-mount options of the mount whose mount point is ``path`` (the topmost one), or None."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape(fields[4]) == path:
                found = set(fields[5].split(","))
    return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def ensure_nosuid_mount(path: Path) -> None:
    """Make ``path`` a mount point with nosuid and nodev (a bind mount onto itself); idempotent. Blocking."""
    real = os.path.realpath(path)
    options = mount_options(real)
    if options is not None and {"nosuid", "nodev"} <= options:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if options is None:
        _mount(libc, real, MS_BIND)
        options = mount_options(real) or set()
    kept = sum(flag for name, flag in _KEPT_FLAGS.items() if name in options)
    _mount(libc, real, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | kept)


def _mount(libc: ctypes.CDLL, path: str, flags: int) -> None:
    if libc.mount(path.encode(), path.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise BackendError(f"could not make {path} a nosuid,nodev mount: {os.strerror(err)}")


def readable_by(path: str, uid: int, gid: int, *, execute: bool = False) -> bool:
    """Can ``uid``/``gid`` reach ``path`` (search every ancestor) and read it? Mode bits only."""
    if uid == 0 or uid == os.geteuid():
        return os.path.exists(path)
    real = os.path.realpath(path)
    parts = real.strip("/").split("/")
    try:
        for i in range(len(parts)):
            if not _allowed(os.stat("/" + "/".join(parts[:i])), uid, gid, 0o1):
                return False
        return _allowed(os.stat(real), uid, gid, 0o5 if execute else 0o4)
    except OSError:
        return False


def _allowed(st: os.stat_result, uid: int, gid: int, want: int) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    bits = (mode >> 6) if st.st_uid == uid else (mode >> 3) if st.st_gid == gid else mode
    return bits & want == want
