"""What the host-directory backends share (local, bubblewrap): each sandbox is a process tree with a
directory of its own on the worker's host, its handle file in it, and its socket in a private
directory of the worker's user. Listing, adoption, the inventory for the sweeper and the handle
files are the same for both; starting, isolating and killing are each backend's own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import stat

from ._base import Backend, BackendError, SandboxHandle, load_handles, save_handle


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this process's user can use (made 0700 if missing); refuses a squatted one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise BackendError(f"{path} must be a directory owned by uid {os.geteuid()} with mode 0700 "
                           f"(found uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); remove it or choose another")
    return path


def default_socket_dir(configured: str | None) -> Path:
    """Where executors' sockets live: short paths (Unix sockets allow ~107 bytes), the worker's alone."""
    return private_dir(Path(configured or f"/tmp/corral-{os.getuid()}"))


class HostDirBackend(Backend):
    """Base of backends whose sandboxes are host process trees, each with its own directory."""

    _root: Path
    """The directory of this worker's sandbox directories (``<root>/<sandbox id>/sandbox.json``)."""

    def sandbox_dir(self, handle: SandboxHandle) -> Path:
        return self._root / handle.sandbox_id

    def _save(self, handle: SandboxHandle) -> None:
        save_handle(self.sandbox_dir(handle), handle)

    async def inventory(self) -> list[SandboxHandle]:
        return await asyncio.to_thread(load_handles, self._root)

    async def list(self) -> list[SandboxHandle]:
        return [h for h in await self.inventory() if await self.alive(h) is None]
