"""Latency summaries the benches print: samples in seconds, percentiles in milliseconds."""

from __future__ import annotations

import statistics


def latency_ms(samples: list[float]) -> dict[str, float]:
    """``n``, ``p50_ms``, ``p99_ms`` and ``mean_ms`` of round trips timed in seconds."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}
