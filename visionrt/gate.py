"""The one accuracy rule of an exported artifact: the export gate and ``precision="auto"`` apply it.

The exporter measures every artifact against the PyTorch model (``visionrt.exporter.verify``) and
calls :func:`failures` on the measurements; the runtime's automatic precision choice calls
:func:`accepts` on the parity record the export wrote into the manifest, which re-applies the same
:func:`failures`. Changing the rule here changes both. Torch-free: the runtime imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Top-1 agreement is also reported on the samples PyTorch is at least this sure about: flips among
# near-tied classes (textures shown to a 1000-class model) are expected of any low precision.
CONFIDENT = 0.3


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria of one precision.

    Attributes:
        top1_agreement: without labels, the top-1 agreement required on the confident samples
            (PyTorch's top probability >= :data:`CONFIDENT`); on all samples when none is
            confident, and always for an ``exact`` precision.
        metric_drop: with labels, the largest drop of the task metric (accuracy or ROC AUC).
        max_abs_error: on probabilities (``exact`` precisions only).
        top5_containment: without labels, the share of samples whose top-5 must hold PyTorch's
            top-1.
        exact: the reference precision itself (fp32): agreement on every sample's top-1 and on the
            probabilities, labels or not.
    """

    top1_agreement: float
    metric_drop: float = 0.01  # one point of accuracy / ROC AUC
    max_abs_error: float | None = None  # on probabilities
    top5_containment: float | None = None
    exact: bool = False


TOLERANCES = {
    "fp32": Tolerance(top1_agreement=0.999, max_abs_error=1e-3, exact=True),
    "fp16": Tolerance(top1_agreement=0.99, top5_containment=0.99),
    "int8": Tolerance(top1_agreement=0.97, top5_containment=0.97),
}


def failures(precision: str, measured: Mapping[str, Any]) -> list[str]:
    """Why an artifact's measurements fail ``precision``'s tolerance; empty when they pass.

    The rule: fp32 must match (top-1 on all samples, probabilities). A lower precision is judged,
    when the images had labels, on the task metric alone (drop of at most ``metric_drop``);
    without labels, on top-1 agreement over the samples PyTorch is confident about (flips among
    near-tied classes are expected of any low precision and say nothing about its accuracy) plus
    top-5 containment of PyTorch's top-1 over all samples (a flip must stay a near miss).

    Args:
        precision: the artifact's precision (a key of :data:`TOLERANCES`).
        measured: a parity report's numbers: ``top1_agreement``, optionally ``max_abs_error``
            (inf when the outputs were not finite), ``metric`` (``name``, ``reference``,
            ``artifact``), ``confident_top1_agreement`` and ``confident_samples``, ``samples``,
            ``top5_containment`` (absent in records written before it was measured).

    Raises:
        KeyError: ``measured`` lacks ``top1_agreement``.
    """
    tolerance = TOLERANCES[precision]
    max_error = float(measured.get("max_abs_error", 0.0))  # absent: not measured, not failed
    found = [] if math.isfinite(max_error) else ["non-finite outputs"]
    metric = measured.get("metric")
    if tolerance.exact or not metric:
        found += _agreement_failures(tolerance, measured)
    if (tolerance.max_abs_error is not None and math.isfinite(max_error)
            and max_error > tolerance.max_abs_error):
        found.append(f"max abs error {max_error:.2e} > {tolerance.max_abs_error:.0e}")
    if metric:
        drop = float(metric["reference"]) - float(metric["artifact"])
        if drop > tolerance.metric_drop + 1e-9:
            found.append(f"{metric['name']} drops {100 * drop:.2f} points "
                         f"(> {100 * tolerance.metric_drop:.0f}){_in_images(metric, drop, measured)}")
    return found


def _in_images(metric: Mapping[str, Any], drop: float, measured: Mapping[str, Any]) -> str:
    """An accuracy drop counted in images, so that a user sees when it is one or two borderline
    images of a small check set (one image of 100 is one point)."""
    samples = int(measured.get("samples") or 0)
    if metric["name"] != "accuracy" or not samples:
        return ""
    count = round(drop * samples)
    return f": {count} image{'s' if count != 1 else ''} of the {samples} checked"


def _agreement_failures(tolerance: Tolerance, measured: Mapping[str, Any]) -> list[str]:
    found = []
    agreement = float(measured["top1_agreement"])
    confident = measured.get("confident_top1_agreement")
    if tolerance.exact or confident is None or not measured.get("confident_samples"):
        if agreement < tolerance.top1_agreement:
            found.append(f"top-1 agreement {agreement:.4f} < {tolerance.top1_agreement}"
                         f"{_confident_detail(measured)}")
    elif float(confident) < tolerance.top1_agreement:
        found.append(f"top-1 agreement {float(confident):.4f} < {tolerance.top1_agreement} on the "
                     f"{int(measured['confident_samples'])} samples PyTorch gives >= "
                     f"{CONFIDENT:.0%} (all {int(measured.get('samples') or 0)}: "
                     f"{agreement:.3f})")
    containment = measured.get("top5_containment")
    if (tolerance.top5_containment is not None and containment is not None
            and float(containment) < tolerance.top5_containment):
        found.append(f"top-5 holds PyTorch's top-1 on {float(containment):.4f} < "
                     f"{tolerance.top5_containment} of the samples")
    return found


def _confident_detail(measured: Mapping[str, Any]) -> str:
    confident = measured.get("confident_top1_agreement")
    count = int(measured.get("confident_samples") or 0)
    if confident is None or count >= int(measured.get("samples") or 0):
        return ""
    return f" ({float(confident):.3f} on the {count} samples PyTorch gives >= {CONFIDENT:.0%})"


def accepts(precision: str, parity: Mapping[str, Any] | None,
            backend: str | None = None) -> tuple[bool, str]:
    """Whether ``precision="auto"`` may pick an artifact with this manifest parity record.

    fp32 is the model itself and always qualifies. Another precision qualifies when the record
    of ``backend`` (the first report, ``other_backends`` or ``skipped_backends``; the first report
    when that backend was not checked) meets :func:`failures`' rule and was not written past a
    failed gate (``--allow-mismatch``).

    Returns:
        (accepted, reason): the reason names the failure, the skip, or what was verified.
    """
    if precision == "fp32":
        return True, "fp32 is the reference precision"
    if not parity:
        return False, "no parity record"
    for skipped in parity.get("skipped_backends", ()):
        if skipped.get("backend") == backend:
            return False, f"{backend} check skipped at export: {skipped.get('skipped')}"
    report = _report_of(parity, backend)
    if report is None:
        return False, "not verified: no backend could run it at export"
    if report.get("passed") is False or parity.get("passed") is False:
        return False, "failed its parity check at export (written with --allow-mismatch)"
    try:
        found = failures(precision, report)
    except (KeyError, TypeError, ValueError):
        return False, "parity record incomplete"
    if found:
        return False, "; ".join(found)
    return True, (f"parity top-1 {float(report['top1_agreement']):.3f} on "
                  f"{report.get('backend', 'export')} meets the {precision} rule")


def _report_of(parity: Mapping[str, Any], backend: str | None) -> Mapping[str, Any] | None:
    first = "backend" in parity or "top1_agreement" in parity  # else only skipped backends
    reports = [parity, *parity.get("other_backends", ())] if first else []
    for report in reports:
        if report.get("backend") == backend:
            return report
    return reports[0] if reports else None
