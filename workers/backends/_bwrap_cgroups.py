"""Per-sandbox cgroup v1 limits of bubblewrap sandboxes (memory(+swap), pids, CPU quota), where writable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import time
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from ._limits import Resources as Limits

log = structlog.get_logger()


class Cgroups:
    """Per-sandbox cgroup v1 directories under <root>/<controller>/corral/, where writable."""

    CONTROLLERS = ("memory", "pids", "cpu")
    _warned = False

    def __init__(self, root: str) -> None:
        self._parents: dict[str, Path] = {}
        for controller in self.CONTROLLERS:
            base = Path(root) / controller
            try:
                if (base / "cgroup.procs").exists():
                    (base / "corral").mkdir(exist_ok=True)
                    if os.access(base / "corral", os.W_OK):
                        self._parents[controller] = base / "corral"
            except OSError:
                pass
        missing = [c for c in ("memory", "pids") if c not in self._parents]
        if missing and not Cgroups._warned:
            Cgroups._warned = True
            log.warning("bubblewrap_cgroups_unavailable", root=root, missing=missing,
                        detail="sandboxes run without these limits (cgroup v1 hierarchies absent or not writable)")

    def enabled(self, controller: str) -> bool:
        return controller in self._parents

    def path(self, controller: str, sandbox_id: str) -> Path:
        return self._parents[controller] / sandbox_id

    def create(self, sandbox_id: str, limits: Limits) -> list[Path]:
        settings = {
            "memory": [("memory.limit_in_bytes", limits.memory_mb << 20), ("memory.memsw.limit_in_bytes", limits.memory_mb << 20)],
            "pids": [("pids.max", limits.pids)],
            "cpu": [("cpu.cfs_period_us", 100_000), ("cpu.cfs_quota_us", max(1000, int(limits.cpus * 100_000)))]
            if limits.cpus else [],
        }
        made = []
        for controller, parent in self._parents.items():
            path = parent / sandbox_id
            path.mkdir()
            made.append(path)
            for name, value in settings[controller]:
                if (path / name).exists():  # memsw exists only with swap accounting
                    (path / name).write_text(str(value))
        return made

    async def remove(self, sandbox_id: str, timeout_s: float = 5.0) -> None:
        """Remove the sandbox's cgroups once their last process has exited (just after a kill, it may not have)."""
        deadline = time.monotonic() + timeout_s
        for parent in self._parents.values():
            path = parent / sandbox_id
            while path.exists():
                try:
                    path.rmdir()
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log.warning("bubblewrap_cgroup_not_removed", path=str(path), error=str(exc))
                        break
                    await asyncio.sleep(0.01)
