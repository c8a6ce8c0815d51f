"""``visionrt bench``: throughput, latency percentiles, cold start and memory of a model.

One configuration = (backend, precision, batch size, concurrency, mode). Modes:

- ``engine``: preloaded uint8 tensors straight into ``Classifier.__call__`` (no decoding);
- ``end_to_end``: image files -> decode -> resize -> infer -> top-k through ``Classifier.predict``;
- ``server``: N client threads submit single images through the ``MicroBatcher``.

Every row reports the precision that really executed (``Classifier.info()``), the cold start of its
classifier (load and first inference, separately), peak RSS and, with a torch baseline, its
speed-up over PyTorch eager on the same model, input and batch. The torch baseline
(``visionrt.bench.baseline``) imports torch only when asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from visionrt.bench.inputs import cycle_batches, random_batch, readable_images
from visionrt.bench.parity import artifact_parity
from visionrt.bench.results import BenchReport, BenchResult, ColdStart, result_row
from visionrt.bench.stats import reset_peak_rss
from visionrt.bench.timing import (
    CudaEventTimer,
    Measurement,
    WallTimer,
    measure_clients,
    measure_steps,
)
from visionrt.errors import ConfigError, check_value, cli_flag
from visionrt.runtime.base import BACKENDS, DEFAULT_CACHE_MAX_MB, PERFORMANCE_HINTS, PRECISIONS

log = logging.getLogger(__name__)

# Fields with a `visionrt bench` flag: their errors name the flag as the user types it.
FLAGS = ("backends", "precisions", "batch_sizes", "concurrency", "duration", "warmup", "baseline",
         "performance")
MODES = ("engine", "end_to_end", "server")
BASELINES = ("torch",)
PERFORMANCE_MODES = PERFORMANCE_HINTS
PRECISION_CHOICES = ("auto", *PRECISIONS)
BACKEND_CHOICES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class BenchConfig:
    """Options of :func:`run_bench`.

    Attributes:
        model: a bundle directory, an ``.onnx`` file or an engine file.
        backends: backend names for ``Classifier.load``; ``("auto",)`` lets the runtime pick.
        precisions: precisions to load; ``("auto",)`` benches every precision the bundle holds for
            the chosen backend (or what ``precision="auto"`` picks for a bare model file).
        batch_sizes: batch sizes of the engine and end-to-end modes.
        duration: measured window per configuration, in seconds.
        warmup: excluded warm-up per configuration, in seconds.
        concurrency: client counts of the server mode (empty: no server mode).
        images: folder of image files for the end-to-end mode (None: no end-to-end mode).
        baseline: ``"torch"`` adds PyTorch eager rows on the same model, input and batch.
        device: ``auto`` | ``cpu`` | ``cuda`` (passed to ``Classifier.load``).
        performance: ``latency`` | ``throughput`` (``Classifier.load``: OpenVINO streams and
            async requests in throughput mode).
        top_k: k of the end-to-end mode's top-k.
        server_max_batch: the micro-batcher's max batch in the server mode.
        server_max_wait_ms: the micro-batcher's max wait in the server mode.
        seed: seeds the random engine-mode input.
    """

    model: Path
    backends: tuple[str, ...] = ("auto",)
    precisions: tuple[str, ...] = ("auto",)
    batch_sizes: tuple[int, ...] = (1, 16)
    duration: float = 10.0
    warmup: float = 2.0
    concurrency: tuple[int, ...] = ()
    images: Path | None = None
    baseline: str | None = None
    device: str = "auto"
    performance: str = "latency"
    compile_cache: bool = True
    cache_dir: Path | None = None
    cache_max_mb: int = DEFAULT_CACHE_MAX_MB
    top_k: int = 5
    server_max_batch: int = 32
    server_max_wait_ms: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        if self.images is not None:
            object.__setattr__(self, "images", Path(self.images))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        for name in ("backends", "precisions", "batch_sizes", "concurrency"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        _check(bool(self.backends) and all(b in BACKEND_CHOICES for b in self.backends),
               "backends", self.backends, f"names from {', '.join(BACKEND_CHOICES)}")
        _check(bool(self.precisions) and all(p in PRECISION_CHOICES for p in self.precisions),
               "precisions", self.precisions, f"names from {', '.join(PRECISION_CHOICES)}")
        _check(bool(self.batch_sizes) and all(1 <= b <= 4096 for b in self.batch_sizes),
               "batch_sizes", self.batch_sizes, "one or more batch sizes in 1..4096")
        _check(all(1 <= c <= 1024 for c in self.concurrency), "concurrency", self.concurrency,
               "client counts in 1..1024")
        _check(0 < self.duration <= 3600, "duration", self.duration, "seconds in (0, 3600]")
        _check(0 <= self.warmup <= 600, "warmup", self.warmup, "seconds in [0, 600]")
        _check(self.baseline in (None, *BASELINES), "baseline", self.baseline, BASELINES)
        _check(self.performance in PERFORMANCE_MODES, "performance", self.performance,
               PERFORMANCE_MODES)
        _check(self.cache_max_mb >= 0, "cache_max_mb", self.cache_max_mb, "MB >= 0")
        _check(1 <= self.top_k <= 1000, "top_k", self.top_k, "1..1000")
        _check(1 <= self.server_max_batch <= 4096, "server_max_batch", self.server_max_batch,
               "1..4096")
        _check(0 <= self.server_max_wait_ms <= 10_000, "server_max_wait_ms",
               self.server_max_wait_ms, "0..10000 ms")
        if not self.model.exists():
            raise ConfigError(f"model not found: {self.model}", source=str(self.model),
                              hint="pass a bundle directory, an .onnx file or an engine file")
        if self.images is not None and not self.images.is_dir():
            raise ConfigError(f"--images {self.images} is not a directory", source=str(self.images))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in data.items()}


def _check(ok: bool, name: str, value: object, expected: object) -> None:
    check_value(ok, cli_flag(name) if name in FLAGS else name, value, expected,
                owner="BenchConfig.")


def run_bench(config: BenchConfig, *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every configuration of ``config``; rows come back in measurement order.

    Args:
        config: what to measure.
        progress: called with a short description before each configuration (the CLI shows it).

    Returns:
        A BenchReport; ``notes`` says what could not be measured and why (e.g. no torch baseline).

    Raises:
        ConfigError, ModelFileError, BackendUnavailableError: the model cannot be loaded as asked.
    """
    from visionrt.bench.environment import environment, loadavg

    say = progress or (lambda message: log.info("%s", message))
    report = BenchReport(environment=environment(), config=config.to_dict())
    files: list[Path] = []
    if config.images is not None:
        files, broken = readable_images(config.images)
        report.notes.extend(f"end-to-end rows leave out {message}" for message in broken[:5])
        if len(broken) > 5:
            report.notes.append(f"... and {len(broken) - 5} more unreadable files in --images")
    for backend, precision in _load_plan(config):
        report.results.extend(_bench_classifier(config, backend, precision, say, files))
    if config.baseline == "torch":
        _add_torch_baseline(config, report, say)
    thin = [f"{row.backend} {row.precision} {row.mode} batch {row.batch_size}"
            f"{f' x{row.concurrency}' if row.mode == 'server' else ''}: {row.below_minimum}"
            for row in report.results if row.below_minimum]
    if thin:
        report.notes.append("* too few samples or seconds to compare, so no speed-up is computed "
                            "from these rows; raise --duration (and --warmup): " + "; ".join(thin))
    report.environment["loadavg_end"] = loadavg()
    return report


def _load_plan(config: BenchConfig) -> Iterator[tuple[str, str]]:
    for backend in config.backends:
        for precision in config.precisions:
            if precision != "auto":
                yield backend, precision
                continue
            available = _bundle_precisions(config.model, backend)
            yield from ((backend, p) for p in (available or ["auto"]))


def _bundle_precisions(model: Path, backend: str) -> list[str]:
    """Distinct precisions of a bundle's artifacts, fp32 first; [] for a bare model file."""
    if not model.is_dir():
        return []
    from visionrt.bundle import load_bundle

    bundle = load_bundle(model)
    target = "tensorrt" if backend == "tensorrt" else "cpu" if backend in ("onnxruntime",
                                                                           "openvino") else None
    order = ("fp32", "bf16", "fp16", "int8")
    found = {a.precision for a in bundle.find(target=target)} if target else {
        a.precision for a in bundle.artifacts if a.target != "tensorrt"}
    return [p for p in order if p in found]


def _bench_classifier(config: BenchConfig, backend: str, precision: str,
                      say: Callable[[str], None], files: list[Path]) -> list[BenchResult]:
    from visionrt.runtime.classifier import Classifier

    say(f"loading {config.model.name} backend={backend} precision={precision}")
    reset_peak_rss()
    started = time.perf_counter()
    # max_batch stays the artifact's: larger bench batches are split by the classifier, as for users.
    clf = Classifier.load(config.model, backend=backend, precision=precision, device=config.device,
                          performance=config.performance, compile_cache=config.compile_cache,
                          cache_dir=config.cache_dir, cache_max_mb=config.cache_max_mb)
    load_ms = (time.perf_counter() - started) * 1000.0
    try:
        info = classifier_info(clf, backend, precision)
        info["parity"] = artifact_parity(config.model, info["backend"], info["details"].get("file"))
        spec = clf.spec
        first = random_batch(spec, config.batch_sizes[0], config.seed)
        started = time.perf_counter()
        clf(first)
        cold = ColdStart(load_ms, (time.perf_counter() - started) * 1000.0)
        rows = _bench_modes(config, clf, spec, info, cold, say, files)
    finally:
        clf.close()
    return rows


def _bench_modes(config: BenchConfig, clf: Any, spec: Any, info: dict[str, Any], cold: ColdStart,
                 say: Callable[[str], None], files: list[Path]) -> list[BenchResult]:
    """The engine rows, end-to-end rows over ``files`` (when ``--images`` was given) and server
    rows of one loaded classifier."""
    timer = _timer(info["device"])
    rows = []
    for batch_size in config.batch_sizes:
        batch = random_batch(spec, batch_size, config.seed)
        say(f"{info['backend']} {info['precision']} batch {batch_size}: engine")
        measurement = measure_steps(lambda b=batch: clf(b), images_per_step=batch_size,
                                    duration_s=config.duration, warmup_s=config.warmup,
                                    timer=timer)
        rows.append(result_row(info, cold, "engine", batch_size, 1, measurement))
        if files:
            say(f"{info['backend']} {info['precision']} batch {batch_size}: end to end")
            rows.append(result_row(info, cold, "end_to_end", batch_size, 1,
                             _measure_end_to_end(config, clf, batch_size, files)))
    server_batch = min(config.server_max_batch, int(getattr(clf, "max_batch", 1 << 30)))
    for clients in config.concurrency:
        say(f"{info['backend']} {info['precision']} {clients} clients: server")
        rows.append(result_row(info, cold, "server", server_batch, clients,
                         _measure_server(config, clf, spec, clients, server_batch)))
    return rows


def _measure_end_to_end(config: BenchConfig, clf: Any, batch_size: int,
                        files: list[Path]) -> Measurement:
    cursor = iter(cycle_batches(files, batch_size))
    return measure_steps(lambda: clf.predict(next(cursor), top_k=config.top_k,
                                             batch_size=batch_size, errors="raise"),
                         images_per_step=batch_size, duration_s=config.duration,
                         warmup_s=config.warmup)


def _measure_server(config: BenchConfig, clf: Any, spec: Any, clients: int,
                    max_batch: int) -> Measurement:
    from visionrt.runtime.batcher import MicroBatcher

    items = list(random_batch(spec, max(clients, 8), config.seed + 1))
    batcher = MicroBatcher(clf, max_batch=max_batch,
                           max_wait_ms=config.server_max_wait_ms, max_queue=max(1024, 4 * clients))
    try:
        return measure_clients(batcher.submit, items, clients=clients,
                               duration_s=config.duration, warmup_s=config.warmup)
    finally:
        batcher.close()


def classifier_info(clf: Any, backend: str, precision: str) -> dict[str, Any]:
    """Backend, executed precision and device from ``Classifier.info()``."""
    raw = dict(clf.info())
    executed = raw.get("executed_precision") or raw.get("precision") or precision
    details = {k: v for k, v in raw.items() if isinstance(v, (str, int, float, bool, type(None)))}
    return {"backend": str(raw.get("backend", backend)), "precision": str(executed),
            "requested_precision": precision, "device": _device_kind(raw.get("device", "cpu")),
            "details": details}


def _device_kind(device: object) -> str:
    text = str(device).lower()
    return "cuda" if "cuda" in text or "gpu" in text else "cpu"


def _timer(device: str) -> WallTimer | CudaEventTimer:
    return CudaEventTimer() if device == "cuda" else WallTimer()


def _add_torch_baseline(config: BenchConfig, report: BenchReport,
                        say: Callable[[str], None]) -> None:
    from visionrt.bench import baseline  # imports torch, timm and the trainer when it runs

    device = report.results[0].device if report.results else "cpu"
    rows, note = baseline.torch_rows(config, device, say)
    if note:
        report.notes.append(note)
    report.results.extend(rows)
    # Speed-ups only between rows that both hold enough samples (a starved row is noise).
    reference = {row.batch_size: row.throughput for row in rows if row.below_minimum is None}
    report.results[:] = [_with_speedup(row, reference) for row in report.results]
    for row in rows:
        if row.below_minimum is not None:
            report.notes.append(f"no speed-up over torch at batch {row.batch_size}: its torch "
                                "row (marked *) is too thin to compare")


def _with_speedup(row: BenchResult, torch_throughput: dict[int, float]) -> BenchResult:
    base = torch_throughput.get(row.batch_size)
    if row.backend == "torch" or row.mode != "engine" or not base or row.below_minimum:
        return row
    return replace(row, speedup_vs_torch=row.throughput / base)


def render_table(report: BenchReport | dict[str, Any]) -> Any:
    """The report as a rich Table (what ``visionrt bench`` and the quickstart print)."""
    from visionrt.bench.table import results_table

    return results_table(report if isinstance(report, dict) else report.to_dict())
