"""The one accuracy rule: what the export gate passes, precision="auto" accepts, and no more."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visionrt import gate
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="x", labels=("a", "b", "c"))


def _report(precision: str, flips: int, backend: str = "onnxruntime", labels: bool = False):
    verify = pytest.importorskip("visionrt.exporter.verify")
    reference = np.random.default_rng(0).normal(0, 3, (200, 3)).astype(np.float32)
    candidate = reference.copy()
    candidate[:flips] = -candidate[:flips]  # each flip changes that sample's top-1
    return verify.compare("m.onnx", precision, backend, reference, candidate, SPEC,
                          labels=reference.argmax(1) if labels else None)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("flips", [0, 1, 2, 4, 6, 10])
@pytest.mark.parametrize("labels", [False, True])
def test_auto_accepts_exactly_what_the_export_gate_passes(precision, flips, labels) -> None:
    report = _report(precision, flips, labels=labels)
    record = json.loads(json.dumps(report.to_record() | {"passed": report.passed}))
    accepted, reason = gate.accepts(precision, record, "onnxruntime")
    assert accepted == report.passed
    if not accepted:
        assert reason == "failed its parity check at export (written with --allow-mismatch)"
    # Re-judged from the stored numbers alone (a record written before "passed" existed):
    record.pop("passed")
    assert gate.accepts(precision, record, "onnxruntime")[0] == report.passed


def test_quickstart_int8_at_098_passes_both() -> None:
    record = {"backend": "onnxruntime", "top1_agreement": 0.98, "max_abs_error": 0.02,
              "samples": 100}
    assert gate.failures("int8", record) == []
    accepted, reason = gate.accepts("int8", record, "openvino")
    assert accepted and "0.980" in reason


def test_each_backend_is_judged_on_its_own_report() -> None:
    good = {"backend": "onnxruntime", "top1_agreement": 1.0, "max_abs_error": 0.01}
    bad = {"backend": "openvino", "top1_agreement": 0.5, "max_abs_error": 0.4, "passed": False}
    record = good | {"other_backends": [bad],
                     "skipped_backends": [{"backend": "tensorrt", "skipped": "no GPU"}]}
    assert gate.accepts("int8", record, "onnxruntime")[0]
    assert not gate.accepts("int8", record, "openvino")[0]
    assert gate.accepts("int8", record, "tensorrt") == (False, "tensorrt check skipped at export: no GPU")
    assert gate.accepts("int8", record, "never-checked")[0]  # falls back to the first report


@pytest.mark.parametrize("record, reason", [
    (None, "no parity record"),
    ({}, "no parity record"),
    ({"reference": "torch", "skipped_backends": [{"backend": "openvino", "skipped": "x"}]},
     "not verified: no backend could run it at export"),
    ({"backend": "onnxruntime", "max_abs_error": 0.1}, "parity record incomplete"),
    ({"backend": "onnxruntime", "top1_agreement": 0.99, "max_abs_error": float("inf")},
     "non-finite outputs"),
])
def test_records_that_prove_nothing_are_refused(record, reason) -> None:
    assert gate.accepts("int8", record, "onnxruntime") == (False, reason)


def test_a_record_without_max_error_is_judged_on_what_it_has() -> None:
    assert gate.accepts("int8", {"top1_agreement": 1.0, "passed": True}, "tensorrt")[0]
    assert not gate.accepts("int8", {"top1_agreement": 0.9}, "tensorrt")[0]


def test_fp32_is_always_eligible_and_failures_name_the_numbers() -> None:
    assert gate.accepts("fp32", None)[0]
    found = gate.failures("fp16", {"top1_agreement": 0.9, "max_abs_error": 0.1, "samples": 10,
                                   "confident_top1_agreement": 1.0, "confident_samples": 8,
                                   "metric": {"name": "accuracy", "reference": 0.9,
                                              "artifact": 0.8}})
    assert found == ["top-1 agreement 0.9000 < 0.99 (1.000 on the 8 samples PyTorch gives "
                     ">= 30%)", "accuracy drops 10.00 points (> 1)"]
