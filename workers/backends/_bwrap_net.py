"""Egress for bubblewrap sandboxes: a network namespace of their own behind slirp4netns.

A sandbox with ``network="egress"`` never shares the host's network namespace. Its namespace
gets a ``tap0`` served by slirp4netns (user-mode TCP/IP: the sandbox's connections become
ordinary sockets of the slirp4netns process on the host), configured as 10.0.2.100/24 with the
default route via 10.0.2.2 and DNS at 10.0.2.3 (slirp forwards it to the host's resolver).

What the sandbox cannot reach:

* the host's loopback: slirp4netns ``--disable-host-loopback`` refuses 10.0.2.2 (its alias for
  the host's 127.0.0.1), and the sandbox's own 127.0.0.1 is its own namespace's ``lo``;
* every address of the host's interfaces (and ``egress_deny`` CIDRs, link-local by default:
  cloud metadata): ``prohibit`` routes installed in the sandbox's namespace from outside
  (``FENCE_HELPER``, as root or as the namespace's owner) before the executor starts. The sandbox
  has no CAP_NET_ADMIN, so it cannot remove them.

The helper runs as the sandbox user, with slirp4netns's own seccomp filter. A root worker starts
it through ``unshare --mount`` so that, in a mount namespace of its own, it finds a
``/dev/net/tun`` it may open (hosts without udev leave the real one 0600) and does not see the
sandboxes' files; then ``setpriv`` drops it to the sandbox user before slirp4netns runs.

Lifetime: slirp4netns exits when the sandbox does. Its ``--exit-fd`` is a pipe whose only
writer is the sandbox itself (bwrap ``--sync-fd``), not the worker, so a worker restart leaves
egress untouched: slirp4netns runs in a session of its own and keeps serving the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
from pathlib import Path
import shutil
import sys

import structlog

from ._base import BackendError
from ._bwrap_host import SandboxUser
from ._bwrap_spawn import read_some
from ._fence import host_addresses

log = structlog.get_logger()

TAP = "tap0"
DNS = "10.0.2.3"
RESOLV_CONF = f"nameserver {DNS}\noptions edns0\n"
MTU = 65520
READY_TIMEOUT_S = 10.0
NS_GET_USERNS = 0xB701
"""ioctl on a namespace fd: an fd of the user namespace that owns it (bwrap nests user namespaces)."""
ROOT_PRELUDE = """\
hide=$1 uid=$2 gid=$3
shift 3
mount -t tmpfs -o size=16k,mode=755 corral-tun /dev/net
mknod -m 666 /dev/net/tun c 10 200
mount -t tmpfs -o size=4k,mode=700 corral-hidden "$hide"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
"""
"""Run as root by `sh -c` inside `unshare --mount`: a private tun node, the sandbox files hidden, then drop to the user."""


def missing_for_egress(slirp4netns: str) -> list[str]:
    """What egress needs that this host lacks: commands, or a /dev/net/tun a worker that is not root may open."""
    tools = [slirp4netns, "ip"] + (["unshare", "setpriv", "mount", "mknod"] if os.geteuid() == 0 else [])
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        missing.append("a /dev/net/tun this user may open (it is 0666 on a standard Debian host)")
    return missing


FENCE_HELPER = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(rc, what):
    if rc != 0:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")
check(libc.setns(int(sys.argv[1]), 0x10000000), "setns(user)")
check(libc.setns(int(sys.argv[2]), 0x40000000), "setns(net)")
CAP_NET_ADMIN = 12
header = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
check(libc.capget(header, data), "capget")
data[2] |= 1 << CAP_NET_ADMIN
check(libc.capset(header, data), "capset")
check(libc.prctl(47, 2, CAP_NET_ADMIN, 0, 0), "prctl(PR_CAP_AMBIENT_RAISE)")
os.execvp("ip", ["ip", "-batch", "-"])
"""
"""Joins the sandbox's user and network namespaces, keeps CAP_NET_ADMIN across exec (ambient), runs ``ip``.

Joining the user namespace gives every capability in it, to root and to an unprivileged worker
that owns it alike; an exec would drop them (neither is uid 0 in there), hence the ambient bit."""


async def block_host_addresses(init_pid: int, deny: tuple[str, ...]) -> list[str]:
    """Install prohibit routes in the sandbox's namespace for the host's addresses and ``deny``; returns them."""
    targets = [f"{a}/32" for a in await asyncio.to_thread(host_addresses)] + [str(ipaddress.ip_network(c)) for c in deny]
    net_fd, user_fd = _namespace_fds(init_pid)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", FENCE_HELPER, str(user_fd), str(net_fd), pass_fds=[user_fd, net_fd],
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(net_fd)
        os.close(user_fd)
    _, err = await proc.communicate("".join(f"route add prohibit {t}\n" for t in targets).encode())
    if proc.returncode != 0:
        raise BackendError(f"could not fence the sandbox's network off the host: {err.decode(errors='replace')[-400:]}")
    return targets


def _namespace_fds(init_pid: int) -> tuple[int, int]:
    """Fds of the sandbox's network namespace and of the user namespace that owns it."""
    net_fd = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return net_fd, fcntl.ioctl(net_fd, NS_GET_USERNS)
    except BaseException:
        os.close(net_fd)
        raise


async def start_slirp(init_pid: int, *, user: SandboxUser, exit_fd: int, log_path: Path, hidden_dir: str,
                      slirp4netns: str = "slirp4netns") -> asyncio.subprocess.Process:
    """Serve the sandbox's network namespace; returns once tap0 is configured."""
    net_fd, user_fd = _namespace_fds(init_pid)
    fds = [net_fd, user_fd]
    try:
        ready_r, ready_w = os.pipe()
        fds += [ready_r, ready_w]
        command = [slirp4netns, "--configure", f"--mtu={MTU}", "--disable-host-loopback", "--enable-seccomp",
                   "--netns-type=path", f"--userns-path=/proc/self/fd/{user_fd}", f"--ready-fd={ready_w}",
                   f"--exit-fd={exit_fd}", f"/proc/self/fd/{net_fd}", TAP]
        if os.geteuid() == 0:
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-euc", ROOT_PRELUDE,
                       "corral-slirp", hidden_dir, str(user.uid), str(user.gid), *command]
        with open(log_path, "ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                pass_fds=[net_fd, user_fd, ready_w, exit_fd], start_new_session=True)
        os.close(ready_w)
        fds.remove(ready_w)
        fds.remove(ready_r)
        try:
            ready = await asyncio.wait_for(read_some(ready_r), READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            ready = b""
        if ready != b"1":
            await stop_helper(proc, timeout_s=0)
            tail = log_path.read_text(errors="replace")[-600:]
            raise BackendError(f"slirp4netns did not configure the sandbox's network: {tail}")
        log.debug("bubblewrap_egress_ready", init_pid=init_pid, slirp_pid=proc.pid)
        return proc
    finally:
        for fd in fds:
            os.close(fd)


async def stop_helper(proc: asyncio.subprocess.Process, timeout_s: float = 5.0) -> None:
    """Wait up to ``timeout_s`` for a helper that exits by itself once its sandbox is gone, then kill it."""
    if timeout_s > 0:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
            return
        except asyncio.TimeoutError:
            pass
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()
