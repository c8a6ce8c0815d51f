"""Verification is a gate: every artifact vs the PyTorch model on held-out images.

Each artifact runs through the backends the runtime ships (ONNX Runtime, and OpenVINO when
installed; TensorRT for engines) and is compared with the eager PyTorch model on the same decoded
images: max/mean abs error of the probabilities, top-1 agreement, and the task metric (accuracy,
or ROC AUC for a sigmoid head) of both when labels exist. A :class:`ParityReport` per artifact and
backend goes into the manifest; :func:`gate` fails the export above tolerance.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.errors import ParityError
from visionrt.gate import CONFIDENT, TOLERANCES, failures
from visionrt.images import normalize
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ParityReport:
    """How one artifact, run by one backend, compares with the PyTorch reference."""

    artifact: str
    precision: str
    backend: str
    samples: int
    inputs: str  # "images" (held-out files), "synthetic"
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float
    confident_top1_agreement: float | None
    confident_samples: int
    metric: dict[str, Any] | None
    tolerance: dict[str, Any]
    passed: bool
    failures: tuple[str, ...] = ()
    backend_info: dict[str, Any] = field(default_factory=dict)
    reference: str = "torch"

    def summary(self) -> str:
        """One line: artifact, backend, agreement, error, metric, verdict."""
        text = (f"{self.artifact} [{self.backend}] top-1 agreement {self.top1_agreement:.3f}, "
                f"max abs error {self.max_abs_error:.1e}")
        if self.metric:
            text += (f", {self.metric['name']} {self.metric['reference']:.3f} -> "
                     f"{self.metric['artifact']:.3f}")
        return text + (" ok" if self.passed else f" FAILED ({'; '.join(self.failures)})")

    def to_record(self) -> dict[str, Any]:
        """The manifest's parity record (contract: reference, samples, max_abs_error, ...)."""
        data = asdict(self)
        data["failures"] = list(self.failures)
        data.pop("artifact")
        return {k: v for k, v in data.items() if v not in (None, {})}


def probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    """Softmax over classes, or [1 - p, p] for a single-logit sigmoid head."""
    logits = logits.astype(np.float64)
    if activation == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-logits[:, :1]))
        return np.concatenate([1.0 - p, p], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def reference_logits(model: Any, pixels: np.ndarray, spec: ModelSpec, batch: int = 16) -> np.ndarray:
    """Logits of the eager PyTorch model on host-normalised float NCHW input."""
    import torch

    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(pixels), batch):
            chunk = pixels[start:start + batch]
            x = torch.from_numpy(normalize(chunk, spec) if chunk.dtype == np.uint8 else chunk)
            outputs.append(model(x).float().numpy())
    return np.concatenate(outputs)


# --- backends ---------------------------------------------------------------------------------
# Artifacts run through the runtime's own backends (visionrt.runtime), so the check exercises the
# code that will serve them: same session options, same executed precision (OpenVINO's hint is
# set to the artifact's precision and read back).
ONNX_BACKENDS = ("onnxruntime", "openvino")


def run_backend(name: str, path: Path, inputs: np.ndarray, batch: int, precision: str, *,
                device: str = "cpu", artifact: Any = None) -> tuple[np.ndarray, dict]:
    """Logits of ``path`` run by the runtime backend ``name`` on ``device``, ``batch`` at a time.

    ``artifact`` is the file's manifest entry, for backends that check it (TensorRT engines are
    refused without their build record).
    """
    from visionrt.runtime.base import BackendConfig, load_backend

    config = BackendConfig(device=device, precision=precision, max_batch=batch)
    with load_backend(name, path, artifact, config) as backend:
        outputs = [backend.infer(np.ascontiguousarray(inputs[i:i + batch]))
                   for i in range(0, len(inputs), batch)]
        info = backend.info().to_dict()
    return np.concatenate(outputs).astype(np.float32), info


def onnx_backends() -> list[str]:
    """The runtime's CPU backends for ONNX files that can run here, in the order checked."""
    from visionrt.runtime.base import backend_unavailable_reason

    usable = []
    for name in ONNX_BACKENDS:
        reason = backend_unavailable_reason(name, "cpu")
        if reason is None:
            usable.append(name)
        else:
            log.info("parity check skips %s: %s", name, reason)
    return usable


# --- comparison -------------------------------------------------------------------------------
def task_metric(probs: np.ndarray, labels: np.ndarray, activation: str) -> tuple[str, float]:
    """ROC AUC for a binary sigmoid head with both classes present, else accuracy."""
    if activation == "sigmoid" and len(np.unique(labels)) == 2:
        from sklearn.metrics import roc_auc_score

        return "roc_auc", float(roc_auc_score(labels, probs[:, 1]))
    return "accuracy", float(np.mean(probs.argmax(axis=1) == labels))


def compare(artifact: str, precision: str, backend: str, reference: np.ndarray,
            candidate: np.ndarray, spec: ModelSpec, *, labels: np.ndarray | None = None,
            inputs: str = "images", backend_info: dict | None = None) -> ParityReport:
    """Compare candidate logits with reference logits under ``precision``'s tolerance."""
    tolerance = TOLERANCES[precision]
    ref_p = probabilities(reference, spec.output_activation)
    out_p = probabilities(candidate, spec.output_activation)
    finite = bool(np.isfinite(out_p).all())
    error = np.abs(ref_p - out_p) if finite else np.full_like(ref_p, np.inf)
    agrees = ref_p.argmax(axis=1) == out_p.argmax(axis=1)
    agreement = float(np.mean(agrees))
    confident = ref_p.max(axis=1) >= CONFIDENT
    confident_agreement = float(np.mean(agrees[confident])) if confident.any() else None
    metric = None
    if labels is not None:
        name, ref_value = task_metric(ref_p, labels, spec.output_activation)
        _, value = task_metric(out_p, labels, spec.output_activation)
        metric = {"name": name, "reference": ref_value, "artifact": value,
                  "drop": ref_value - value}
    measured = {"samples": len(reference), "max_abs_error": float(error.max()),
                "top1_agreement": agreement, "confident_top1_agreement": confident_agreement,
                "confident_samples": int(confident.sum()), "metric": metric}
    found = failures(precision, measured)
    return ParityReport(
        artifact=artifact, precision=precision, backend=backend, samples=len(reference),
        inputs=inputs, max_abs_error=float(error.max()), mean_abs_error=float(error.mean()),
        top1_agreement=agreement, confident_top1_agreement=confident_agreement,
        confident_samples=int(confident.sum()), metric=metric, tolerance=asdict(tolerance),
        passed=not found, failures=tuple(found), backend_info=backend_info or {},
    )


@dataclass(frozen=True)
class SkippedCheck:
    """A backend that cannot execute an artifact's precision on this machine: not a failure."""

    artifact: str
    backend: str
    reason: str

    def summary(self) -> str:
        return f"{self.artifact} [{self.backend}] skipped: {self.reason}"

    def to_record(self) -> dict[str, str]:
        return {"backend": self.backend, "skipped": self.reason}


def verify_onnx(path: Path, precision: str, reference: np.ndarray, inputs: np.ndarray,
                spec: ModelSpec, *, labels: np.ndarray | None, input_kind: str,
                backends: list[str], batch: int) -> tuple[list[ParityReport], list[SkippedCheck]]:
    """Run one ONNX artifact through every backend in ``backends`` that executes ``precision``
    on this machine and compare each; the others are returned as skipped checks."""
    from visionrt.runtime.capability import precision_unavailable_reason

    reports, skipped = [], []
    for backend in backends:
        gap = precision_unavailable_reason(backend, precision, "cpu")
        if gap is not None:
            log.info("parity check of %s skips %s: %s", path.name, backend, gap)
            skipped.append(SkippedCheck(path.name, backend, gap))
            continue
        logits, info = run_backend(backend, path, inputs, batch, precision)
        report = compare(path.name, precision, backend, reference, logits, spec, labels=labels,
                         inputs=input_kind, backend_info=info)
        log.info("%s on %s: top-1 agreement %.4f, max abs error %.2e%s", path.name, backend,
                 report.top1_agreement, report.max_abs_error,
                 "" if report.passed else f" FAILED ({'; '.join(report.failures)})")
        reports.append(report)
    return reports, skipped


def parity_record(reports: list[ParityReport],
                  skipped: list[SkippedCheck] | tuple = ()) -> dict[str, Any]:
    """The manifest record of one artifact: the first backend's report + the others, and the
    backends that could not execute it here (``skipped_backends``: backend and reason)."""
    record = reports[0].to_record() if reports else {"reference": "torch"}
    if len(reports) > 1:
        record["other_backends"] = [r.to_record() for r in reports[1:]]
    if skipped:
        record["skipped_backends"] = [s.to_record() for s in skipped]
    if reports:
        record["passed"] = all(r.passed for r in reports)
    return record


def gate(reports: list[ParityReport], *, allow_mismatch: bool) -> list[ParityReport]:
    """Raise ParityError naming every failed artifact/backend, unless mismatches are allowed.

    Returns:
        the failed reports (logged as warnings when allowed).
    """
    failed = [r for r in reports if not r.passed]
    if not failed:
        return []
    summary = "; ".join(f"{r.artifact} on {r.backend}: {', '.join(r.failures)}" for r in failed)
    if allow_mismatch:
        log.warning("parity check failed but --allow-mismatch was given: %s", summary)
        return failed
    raise ParityError(f"exported artifacts disagree with the PyTorch model: {summary}",
                      actual=[r.to_record() for r in failed],
                      hint="no bundle was written; try another --calib-method or more "
                      "--calib-samples, or pass --allow-mismatch to write it anyway")
