"""Soak test of the micro-batcher (catalogue E5; cases D1-D4, D8, D10).

8 caller threads push requests through one :class:`visionrt.runtime.batcher.MicroBatcher` for a
bounded time: mostly good images (arrays of random sizes, PNG/JPEG bytes), 5-10 % bad inputs
(truncated JPEG, decompression-bomb header, HTML, float64 / CHW / 4-channel / NaN / empty arrays)
and random short timeouts. RSS is sampled twice a second; growth is measured from the end of the
warm-up to the end of the run (medians of the first and last tenth of the post-warm-up samples),
so allocator and arena warm-up are not counted.

It fails (exit 1) when RSS grows more than ``--max-growth-mb``, when a future never resolves, when
a good request gets a wrong answer (each reply is checked against a single-image reference run), or
when the batcher's worker had to be restarted. ``--leak-control`` wraps the classifier so it
keeps ``--leak-mb`` (default 200 MB) alive, leaked evenly over the run: that run must fail, which
proves the detector works (Triton's L0_memory_growth negative control).

Usage:
    python benchmarks/soak.py --seconds 600                      # the 10-minute soak
    python benchmarks/soak.py --seconds 60 --leak-control        # must exit 1
    python benchmarks/soak.py --model BUNDLE_OR_ONNX --seconds 600 --json soak.json

Without ``--model`` a tiny uint8-NHWC ONNX classifier (mean colour x matrix, built with the
``onnx`` package) is written to a temporary bundle.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _tiny_bundle import SIZE, build_tiny_bundle

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- inputs ------------------------------------------------------------------------------------
def _encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def make_inputs(seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(good inputs, bad inputs); built once so the soak loop itself allocates little."""
    rng = np.random.default_rng(seed)
    good: list[Any] = []
    for _ in range(48):
        h, w = int(rng.integers(8, 96)), int(rng.integers(8, 96))
        good.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG") * 8:
        good.append(_encode(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), fmt))
    jpeg = _encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    bomb = bytearray(_encode(np.zeros((1, 1, 3), np.uint8), "PNG"))
    at = bomb.index(b"IHDR")
    bomb[at + 4:at + 12] = (100_000).to_bytes(4, "big") * 2  # claims 100k x 100k pixels
    bomb[at + 17:at + 21] = zlib.crc32(bytes(bomb[at:at + 17])).to_bytes(4, "big")
    bad: list[Any] = [
        jpeg[: len(jpeg) // 2], bytes(bomb), b"<html>502 Bad Gateway</html>", b"",
        np.zeros((SIZE, SIZE, 3), np.float64), np.zeros((3, SIZE, SIZE), np.uint8),
        np.zeros((SIZE, SIZE, 4), np.uint8), np.full((SIZE, SIZE, 3), np.nan, np.float32),
        np.zeros((0, 0, 3), np.uint8),
    ]
    return good, bad


# --- measurement -------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


class LatencyHistogram:
    """Fixed-memory latency histogram (log buckets, 1 us .. 100 s), so the soak does not grow."""

    def __init__(self) -> None:
        self.edges = np.logspace(-6, 2, 801)
        self.counts = np.zeros(len(self.edges) + 1, np.int64)
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        index = int(np.searchsorted(self.edges, seconds))
        with self.lock:
            self.counts[index] += 1

    def quantile(self, q: float) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return math.nan
        index = int(np.searchsorted(np.cumsum(self.counts), q * total))
        return float(self.edges[min(index, len(self.edges) - 1)])


@dataclass
class SoakReport:
    seconds: float
    threads: int
    leak_control: bool
    submitted: int = 0
    served: int = 0
    wrong_answers: int = 0
    unresolved: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    throughput: float = 0.0
    rss_start_mb: float = 0.0
    rss_baseline_mb: float = 0.0
    rss_final_mb: float = 0.0
    rss_peak_mb: float = 0.0
    growth_mb: float = 0.0
    max_growth_mb: float = 50.0
    batches: int = 0
    mean_batch: float = 0.0
    worker_restarts: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def growth_mb(samples: list[tuple[float, int]], warmup_end: float) -> tuple[float, float, float]:
    """(baseline MB, final MB, growth MB): medians of the first and last tenth after warm-up."""
    after = [rss for t, rss in samples if t >= warmup_end]
    if len(after) < 4:
        after = [rss for _, rss in samples]
    tenth = max(1, len(after) // 10)
    baseline = float(np.median(after[:tenth])) / 2**20
    final = float(np.median(after[-tenth:])) / 2**20
    return baseline, final, final - baseline


# --- the run -----------------------------------------------------------------------------------
class _Leaky:
    """Negative control: a classifier that leaks ``total_mb`` evenly over ``seconds``.

    Each call tops the kept memory up to ``total_mb * elapsed / seconds``, so the leak rate does
    not depend on throughput and a long control run cannot exhaust the machine.
    """

    def __init__(self, classifier: Any, total_mb: float, seconds: float) -> None:
        self._classifier, self._total, self._seconds = classifier, total_mb * 2**20, seconds
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self.kept: list[bytes] = []
        self.kept_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._classifier, name)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        elapsed = time.monotonic() - self._start
        due = int(self._total * min(1.0, elapsed / self._seconds)) - self.kept_bytes
        if due > 0:
            with self._lock:
                self.kept.append(b"\x01" * due)  # touched pages: counted in RSS
                self.kept_bytes += due
        return self._classifier(batch)


def _reference(classifier: Any, good: list[Any]) -> list[int]:
    """Top-1 of every good input run alone: what the batcher must return for it."""
    return [int(np.argmax(classifier(classifier.preprocess(x)[None]))) for x in good]


def run_soak(model: Path, *, seconds: float, threads: int = 8, bad_fraction: float = 0.08,
             timeout_fraction: float = 0.05, warmup: float | None = None,
             max_growth_mb: float = 50.0, leak_control: bool = False, leak_mb: float = 200.0,
             seed: int = 0, max_batch: int = 16, max_queue: int = 256) -> SoakReport:
    """Run the soak and return its report (``report.ok`` is the verdict)."""
    from visionrt.runtime.batcher import MicroBatcher
    from visionrt.runtime.classifier import Classifier

    report = SoakReport(seconds=seconds, threads=threads, leak_control=leak_control,
                        max_growth_mb=max_growth_mb)
    good, bad = make_inputs(seed)
    classifier = Classifier.load(model, backend="onnxruntime", device="cpu")
    target: Any = _Leaky(classifier, leak_mb, seconds) if leak_control else classifier
    batcher = MicroBatcher(target, max_batch=max_batch, max_wait_ms=2, max_queue=max_queue)
    traffic = _Traffic(batcher, good, bad, _reference(classifier, good), seed,
                       time.monotonic() + seconds, bad_fraction, timeout_fraction)
    report.rss_start_mb = rss_bytes() / 2**20
    samples, elapsed = _run_clients(traffic, threads)
    batcher.close(timeout=10)
    classifier.close()
    _fill(report, traffic, samples, seconds * 0.2 if warmup is None else warmup, elapsed,
          batcher.stats)
    return report


@dataclass
class _Traffic:
    """What every client thread shares: the batcher, the inputs and the tallies."""

    batcher: Any
    good: list[Any]
    bad: list[Any]
    expected: list[int]
    seed: int
    deadline: float
    bad_fraction: float
    timeout_fraction: float
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    tally: Counter = field(default_factory=Counter)  # outcomes: served, wrong, error names, ...
    lock: threading.Lock = field(default_factory=threading.Lock)


def _run_clients(traffic: _Traffic, threads: int) -> tuple[list[tuple[float, int]], float]:
    """Run ``threads`` clients to the deadline while sampling RSS; (samples, elapsed seconds)."""
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.5):
            samples.append((time.monotonic() - start, rss_bytes()))

    monitor = threading.Thread(target=sampler, daemon=True)
    monitor.start()
    workers = [threading.Thread(target=_client, args=(traffic, i), name=f"soak-{i}")
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    monitor.join()
    return samples, time.monotonic() - start


def _client(traffic: _Traffic, index: int) -> None:
    rnd = random.Random(traffic.seed * 1000 + index)
    local: Counter[str] = Counter()
    while time.monotonic() < traffic.deadline:
        local.update(_request(traffic, rnd))
    with traffic.lock:
        traffic.tally.update(local)


def _request(traffic: _Traffic, rnd: random.Random) -> list[str]:
    """One request, good or bad, with a normal or a short timeout: the outcomes it counts as."""
    from visionrt.errors import QueueFullError, RequestTimeoutError

    is_bad = rnd.random() < traffic.bad_fraction
    pool = traffic.bad if is_bad else traffic.good
    item = rnd.randrange(len(pool))
    timeout = rnd.uniform(0.0005, 0.003) if rnd.random() < traffic.timeout_fraction else 10.0
    started = time.perf_counter()
    try:
        future = traffic.batcher.submit(pool[item], timeout=timeout)
    except QueueFullError:
        time.sleep(0.001)
        return ["QueueFullError"]
    try:
        prediction = future.result(timeout=60)
    except RequestTimeoutError:  # a TimeoutError subclass: the request's own deadline
        return ["submitted", "RequestTimeoutError"]
    except TimeoutError:  # the future did not resolve within 60 s
        return ["submitted", "unresolved"]
    except Exception as exc:  # noqa: BLE001 - every error type is counted
        return ["submitted", type(exc).__name__]
    traffic.histogram.add(time.perf_counter() - started)
    wrong = is_bad or prediction.index != traffic.expected[item]
    return ["submitted", "served", "wrong"] if wrong else ["submitted", "served"]


def _fill(report: SoakReport, traffic: _Traffic, samples: list, warmup: float, elapsed: float,
          stats: Any) -> None:
    tally = traffic.tally
    report.submitted, report.served = tally["submitted"], tally["served"]
    report.wrong_answers, report.unresolved = tally["wrong"], tally["unresolved"]
    report.errors = {name: count for name, count in tally.most_common()
                     if name not in ("submitted", "served", "wrong", "unresolved")}
    report.p50_ms = traffic.histogram.quantile(0.50) * 1000
    report.p99_ms = traffic.histogram.quantile(0.99) * 1000
    report.throughput = report.served / elapsed
    report.rss_baseline_mb, report.rss_final_mb, report.growth_mb = growth_mb(samples, warmup)
    report.rss_peak_mb = max((rss for _, rss in samples), default=0) / 2**20
    report.batches = stats.batches
    report.mean_batch = stats.completed / max(stats.batches, 1)
    report.worker_restarts = stats.worker_restarts
    if report.growth_mb > report.max_growth_mb:
        report.failures.append(f"RSS grew {report.growth_mb:.1f} MB after warm-up "
                               f"(limit {report.max_growth_mb:.0f} MB)")
    if report.unresolved:
        report.failures.append(f"{report.unresolved} futures never resolved")
    if report.wrong_answers:
        report.failures.append(f"{report.wrong_answers} replies differ from the single-image "
                               "reference (cross-talk?)")
    if report.worker_restarts:
        report.failures.append(f"the batch worker died {report.worker_restarts} times")
    if report.served == 0:
        report.failures.append("no request was served")


def format_report(report: SoakReport) -> str:
    lines = [
        f"soak: {report.seconds:.0f} s, {report.threads} threads"
        + (" [LEAK CONTROL]" if report.leak_control else ""),
        f"  requests submitted {report.submitted}, served {report.served} "
        f"({report.throughput:.0f}/s), wrong answers {report.wrong_answers}, "
        f"unresolved {report.unresolved}",
        "  errors: " + (", ".join(f"{k} {v}" for k, v in report.errors.items()) or "none"),
        f"  latency p50 {report.p50_ms:.2f} ms, p99 {report.p99_ms:.2f} ms; "
        f"{report.batches} batches, mean size {report.mean_batch:.1f}, "
        f"worker restarts {report.worker_restarts}",
        f"  RSS start {report.rss_start_mb:.0f} MB, after warm-up {report.rss_baseline_mb:.1f} "
        f"MB, end {report.rss_final_mb:.1f} MB, peak {report.rss_peak_mb:.1f} MB: growth "
        f"{report.growth_mb:+.1f} MB (limit {report.max_growth_mb:.0f} MB)",
        "  verdict: " + ("PASS" if report.ok else "FAIL: " + "; ".join(report.failures)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="bundle dir or .onnx")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--bad-fraction", type=float, default=0.08)
    parser.add_argument("--timeout-fraction", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% of --seconds")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--leak-control", action="store_true")
    parser.add_argument("--leak-mb", type=float, default=200.0,
                        help="memory the control leaks, evenly over the run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visionrt-soak-") as tmp:
        model = args.model or build_tiny_bundle(Path(tmp) / "bundle")
        report = run_soak(model, seconds=args.seconds, threads=args.threads,
                          bad_fraction=args.bad_fraction, timeout_fraction=args.timeout_fraction,
                          warmup=args.warmup, max_growth_mb=args.max_growth_mb,
                          leak_control=args.leak_control, leak_mb=args.leak_mb,
                          seed=args.seed)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
