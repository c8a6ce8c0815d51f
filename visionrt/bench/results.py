"""The rows and the report of a bench run: what ``visionrt bench`` prints and writes as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionrt.bench.stats import peak_rss_mb
from visionrt.bench.timing import Measurement


@dataclass(frozen=True)
class BenchResult:
    """One row of the report (the JSON ``results`` entries)."""

    backend: str
    precision: str  # what really executed (fp32 / fp16 / bf16 / int8)
    batch_size: int
    concurrency: int
    mode: str
    throughput: float
    latency_ms: dict[str, float]
    cold_start_ms: float  # load + first inference of this row's model
    samples: int
    load_ms: float = 0.0
    first_inference_ms: float = 0.0
    peak_rss_mb: float = 0.0
    requested_precision: str = "auto"
    device: str = "cpu"
    errors: int = 0
    speedup_vs_torch: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    below_minimum: str | None = None  # too few samples to compare: no speed-up from this row

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["throughput"] = round(self.throughput, 2)
        for key in ("cold_start_ms", "load_ms", "first_inference_ms", "peak_rss_mb"):
            data[key] = round(data[key], 1)
        if self.speedup_vs_torch is not None:
            data["speedup_vs_torch"] = round(self.speedup_vs_torch, 2)
        return data


@dataclass
class BenchReport:
    """Environment, configuration, rows and notes of one bench run."""

    environment: dict[str, Any]
    config: dict[str, Any]
    results: list[BenchResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "config": self.config,
                "results": [row.to_dict() for row in self.results], "notes": list(self.notes)}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


@dataclass(frozen=True)
class ColdStart:
    load_ms: float
    first_inference_ms: float

    @property
    def total_ms(self) -> float:
        return self.load_ms + self.first_inference_ms


def result_row(info: dict[str, Any], cold: ColdStart, mode: str, batch_size: int, concurrency: int,
               measurement: Measurement) -> BenchResult:
    """One report row. ``info``: the classifier's backend, executed and requested precision, device
    and details (``run.classifier_info`` builds it from ``Classifier.info()``)."""
    return BenchResult(
        backend=info["backend"], precision=info["precision"], batch_size=batch_size,
        concurrency=concurrency, mode=mode, throughput=measurement.throughput,
        latency_ms=measurement.latency.to_dict(), cold_start_ms=cold.total_ms,
        samples=measurement.latency.samples, load_ms=cold.load_ms,
        first_inference_ms=cold.first_inference_ms, peak_rss_mb=peak_rss_mb(),
        requested_precision=info["requested_precision"], device=info["device"],
        errors=measurement.errors, details=info["details"],
        below_minimum=measurement.below_minimum,
    )
