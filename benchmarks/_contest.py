"""Interleaved rounds: a fair way to compare engines on a shared, noisy CPU.

Every contestant of a group runs one short fixed-duration window per round, in turn (the order
reversed every other round), for several rounds; background load then hits all of them alike. Each contestant reports its best and median
round (throughput) and the latency percentiles of its best round. The timing loop is visionrt's
own (``visionrt.bench.timing.measure_steps``): warm-up excluded, fixed duration.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from visionrt.bench.timing import Measurement, measure_steps


@dataclass
class Contestant:
    name: str
    step: Callable[[], Any]
    images_per_step: int
    precision: str  # what really executes
    details: dict[str, Any] = field(default_factory=dict)
    rounds: list[Measurement] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time per round

    @property
    def best(self) -> Measurement:
        return max(self.rounds, key=lambda m: m.throughput)

    @property
    def median_throughput(self) -> float:
        return statistics.median(m.throughput for m in self.rounds)

    @property
    def images_per_cpu_second(self) -> float:
        """Median images per CPU-second of this process: less sensitive to other jobs' load
        than wall-clock throughput (spin-waiting threads still count)."""
        return statistics.median(m.images / max(c, 1e-9)
                                 for m, c in zip(self.rounds, self.cpu_seconds, strict=True))

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"name": self.name, "precision": self.precision,
                "throughput_best": round(best.throughput, 1),
                "throughput_median": round(self.median_throughput, 1),
                "throughput_rounds": [round(m.throughput, 1) for m in self.rounds],
                "images_per_cpu_second": round(self.images_per_cpu_second, 1),
                "latency_ms": best.latency.to_dict(), "samples": best.latency.samples,
                "details": self.details}


def run_rounds(contestants: list[Contestant], *, rounds: int, seconds: float,
               warmup_s: float = 0.3) -> list[Contestant]:
    """Measure every contestant ``rounds`` times, interleaved."""
    for contestant in contestants:  # first-call costs (allocation, JIT) before any window
        contestant.step()
    for index in range(rounds):
        # alternate the order: whoever runs right after a switch of engines (cold caches, the
        # previous engine's threads winding down) is not always the same contestant
        for contestant in (contestants if index % 2 == 0 else contestants[::-1]):
            cpu_start = time.process_time()
            contestant.rounds.append(measure_steps(
                contestant.step, images_per_step=contestant.images_per_step,
                duration_s=seconds, warmup_s=warmup_s))
            # warm-up CPU time is included; scale it out by the measured share of the window
            measured = contestant.rounds[-1]
            share = measured.wall_s / (measured.wall_s + warmup_s)
            contestant.cpu_seconds.append((time.process_time() - cpu_start) * share)
    return contestants


def print_group(title: str, contestants: list[Contestant]) -> None:
    print(f"\n{title}")
    for c in contestants:
        lat = c.best.latency
        print(f"  {c.name:34s} {c.precision:10s} best {c.best.throughput:8.1f}  median "
              f"{c.median_throughput:8.1f} img/s  {c.images_per_cpu_second:7.1f} img/cpu-s  "
              f"p50 {lat.p50:8.2f}  p99 {lat.p99:8.2f} ms",
              flush=True)


def paired_ratio(ours: dict[str, Any], peer: dict[str, Any]) -> float:
    """Median over rounds of ours/peer throughput in the same round: the two windows ran seconds
    apart, so a load change between rounds cancels out (the most robust number on a busy host)."""
    return statistics.median(a / b for a, b in zip(ours["throughput_rounds"],
                                                   peer["throughput_rounds"], strict=True))
