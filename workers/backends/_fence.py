"""Fencing an egress sandbox off its host: ``prohibit`` routes, inside the sandbox's own network
namespace, for every address of the host's interfaces (and a few CIDRs, link-local by default:
cloud metadata). The sandbox has no CAP_NET_ADMIN, so it cannot remove them; packets to the host
never leave its namespace, whichever of the host's addresses they name (the broker's port
included, wherever it listens)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil

from ._base import BackendError

DEFAULT_DENY = ("169.254.0.0/16",)


def host_addresses() -> list[str]:
    """Every IPv4 address of the host's interfaces except loopback (from the kernel's local routing table)."""
    found: set[str] = set()
    last = None
    with open("/proc/net/fib_trie") as f:
        for line in f:
            text = line.strip()
            if text.startswith("|-- "):
                last = text[4:]
            elif text == "/32 host LOCAL" and last is not None and not last.startswith("127."):
                found.add(last)
    return sorted(found, key=ipaddress.IPv4Address)


def fence_targets(deny: tuple[str, ...], *, spare: tuple[str, ...] = ()) -> list[str]:
    hosts = [a for a in host_addresses() if a not in spare]
    return [f"{a}/32" for a in hosts] + [str(ipaddress.ip_network(c)) for c in deny]


async def fence_as_root(pid: int, deny: tuple[str, ...], *, spare: tuple[str, ...] = ()) -> list[str]:
    """Install the fence in the network namespace of host process ``pid`` (a container's init), as root."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("ip") is None:
        raise BackendError("fencing an egress sandbox off the host needs a root worker with nsenter and ip "
                           "(Debian packages util-linux, iproute2)")
    targets = await asyncio.to_thread(fence_targets, deny, spare=spare)
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-batch", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate("".join(f"route add prohibit {t}\n" for t in targets).encode())
    if proc.returncode != 0:
        raise BackendError(f"could not fence the sandbox's network off the host: {err.decode(errors='replace')[-400:]}")
    return targets
