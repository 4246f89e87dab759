"""This process's peak resident memory, resettable: the kernel's VmHWM and /proc/self/clear_refs.

ru_maxrss cannot be reset, so an earlier test's peak would hide a later one's growth; writing 5 to
clear_refs sets the peak back to the current RSS (Linux 4.0+).
"""

from __future__ import annotations

from pathlib import Path


def peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def reset() -> int:
    """Set the peak back to the current RSS and return it, in kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_kb()


def grown_mb(since_kb: int) -> float:
    return (peak_kb() - since_kb) / 1024
