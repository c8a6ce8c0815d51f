"""Timing statistics for benchmarks: percentiles, latency summaries and peak memory.

Standard library only (no numpy needed), so the numbers are easy to check by hand:
percentiles use linear interpolation between closest ranks, the same rule as
``numpy.percentile(..., method="linear")``.
"""

from __future__ import annotations

import math
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from visionrt.errors import ConfigError

PERCENTILES = (50, 90, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``samples`` (linear interpolation between closest ranks).

    Args:
        samples: at least one finite number, in any order.
        q: percentile in 0..100.

    Returns:
        The interpolated value; ``percentile([x], q) == x`` for every ``q``.

    Raises:
        ConfigError: ``samples`` is empty or ``q`` is outside 0..100.
    """
    if not samples:
        raise ConfigError("percentile of an empty sample set",
                          hint="measure at least one iteration")
    if not 0.0 <= q <= 100.0:
        raise ConfigError(f"percentile q = {q!r} is invalid; expected a value in 0..100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    weight = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * weight


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles of one configuration, in milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    samples: int

    def to_dict(self) -> dict[str, float]:
        """The ``latency_ms`` object of the bench JSON (rounded to microseconds)."""
        return {name: round(getattr(self, name), 3) for name in ("p50", "p90", "p99", "max")}


def summarize(latencies_s: Sequence[float]) -> LatencySummary:
    """Percentiles of latencies given in seconds, reported in milliseconds.

    Raises:
        ConfigError: no latencies were recorded.
    """
    if not latencies_s:
        raise ConfigError("no latencies were recorded", hint="increase --duration")
    ms = [value * 1000.0 for value in latencies_s]
    return LatencySummary(
        p50=percentile(ms, 50),
        p90=percentile(ms, 90),
        p99=percentile(ms, 99),
        max=max(ms),
        mean=sum(ms) / len(ms),
        samples=len(ms),
    )


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process, Linux only.

    Returns:
        True when the counter was reset, so ``peak_rss_mb`` measures from now on; False when the
        platform does not allow it (then the peak covers the whole process lifetime).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (since start, or since ``reset_peak_rss``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024.0 * 1024.0) if sys.platform == "darwin" else usage / 1024.0
