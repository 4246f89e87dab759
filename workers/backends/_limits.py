"""What a session may ask of any backend, judged once: resources within bounds, a known network.

Each backend gives its defaults and its caps (the engine's or the host's); the checks and their
``invalid_spec`` messages are the same everywhere.
"""

from __future__ import annotations

import math
from typing import NoReturn

import msgspec

from protocol import SessionSpec, codes

from ._base import BackendError

MIN_MEMORY_MB = 64
MIN_PIDS = 32
MIN_CPUS = 0.05
NETWORKS = ("none", "egress")


def invalid(message: str) -> NoReturn:
    raise BackendError(message, codes.INVALID_SPEC)


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    memory_mb: int
    pids: int
    cpus: float | None
    """None: no CPU limit (a backend without a default)."""


def resolve_resources(spec: SessionSpec, *, memory_mb: int, pids: int, cpus: float | None, max_memory_mb: int | None,
                      max_pids: int, max_cpus: float | None) -> Resources:
    """The spec's resources over the backend's defaults, each within [minimum, the backend's cap]."""
    res = spec.resources
    wanted = Resources(memory_mb=res.memory_mb if res and res.memory_mb is not None else memory_mb,
                       pids=res.pids if res and res.pids is not None else pids,
                       cpus=res.cpus if res and res.cpus is not None else cpus)
    if not MIN_MEMORY_MB <= wanted.memory_mb or (max_memory_mb and wanted.memory_mb > max_memory_mb):
        invalid(f"resources.memory_mb={wanted.memory_mb} is out of range ({MIN_MEMORY_MB} to "
                f"{max_memory_mb or 'the host memory'})")
    if not MIN_PIDS <= wanted.pids <= max_pids:
        invalid(f"resources.pids={wanted.pids} is out of range ({MIN_PIDS} to {max_pids})")
    if wanted.cpus is not None and (not math.isfinite(wanted.cpus) or wanted.cpus < MIN_CPUS
                                    or (max_cpus and wanted.cpus > max_cpus)):
        invalid(f"resources.cpus={wanted.cpus} is out of range ({MIN_CPUS} to {max_cpus or 'the host CPU count'})")
    return wanted


def resolve_network(spec: SessionSpec, default: str = "none") -> str:
    network = spec.network if spec.network is not None else default
    if network not in NETWORKS:
        invalid(f"network={network!r} is not one of {', '.join(NETWORKS)}")
    return network
