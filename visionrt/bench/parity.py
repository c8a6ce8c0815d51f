"""Each bench row's accuracy: the parity the export measured for the artifact that row ran.

A user chooses between fp32, fp16 and int8 from one table, as Ultralytics' benchmark shows
accuracy and speed per format: the task metric when the export had labelled images, otherwise
top-1 agreement with the PyTorch model (all samples, and the confident ones the gate judges).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def artifact_parity(model: Path, backend: str, file: str | None) -> dict[str, Any] | None:
    """The manifest's parity numbers of ``file`` as checked on ``backend`` (its first report when
    that backend was not checked); None for a bare model file or an artifact without a record."""
    from visionrt.bundle import load_bundle

    if not file or not Path(model).is_dir():
        return None
    artifact = next((a for a in load_bundle(model).artifacts if a.file == Path(file).name), None)
    record = (artifact.parity or {}) if artifact is not None else {}
    reports = [record, *record.get("other_backends", ())] if "top1_agreement" in record else []
    if not reports:
        return None
    report = next((r for r in reports if r.get("backend") == backend), reports[0])
    found: dict[str, Any] = {"checked_on": report.get("backend"), "samples": report.get("samples"),
                             "passed": record.get("passed"),
                             "top1_agreement": report["top1_agreement"],
                             "confident_top1_agreement": report.get("confident_top1_agreement")}
    metric = report.get("metric")
    if metric:
        found.update(metric=metric["name"], value=metric["artifact"], reference=metric["reference"])
    else:
        found.update(metric="top1_agreement", value=report["top1_agreement"])
    return found


def describe(parity: dict[str, Any] | None) -> str:
    """Short table text: ``acc 0.912 (-0.3)`` with labels, ``top-1 0.940 (conf 0.979)`` without."""
    if not parity:
        return "-"
    if parity["metric"] != "top1_agreement":
        short = {"accuracy": "acc", "roc_auc": "auc"}.get(parity["metric"], parity["metric"])
        drop = 100 * (parity["value"] - parity["reference"])
        return f"{short} {parity['value']:.3f} ({drop:+.1f})"
    confident = parity.get("confident_top1_agreement")
    tail = "" if confident is None else f" (conf {confident:.3f})"
    return f"top-1 {parity['value']:.3f}{tail}"
