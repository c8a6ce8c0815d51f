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
    # with labels, the metric decides; counted in images too (one image of 10 is 10 points)
    assert found == ["accuracy drops 10.00 points (> 1): 1 image of the 10 checked"]


# The issue-14 rule: labels -> the task metric; no labels -> confident top-1 + top-5 containment.
NEAR_TIES = {"top1_agreement": 0.85, "samples": 100, "confident_top1_agreement": 1.0,
             "confident_samples": 40, "top5_containment": 1.0, "max_abs_error": 0.2}


def test_without_labels_flips_among_near_ties_pass_when_confident_samples_agree() -> None:
    assert gate.failures("int8", NEAR_TIES) == []
    found = gate.failures("int8", NEAR_TIES | {"confident_top1_agreement": 0.95})
    assert found == ["top-1 agreement 0.9500 < 0.97 on the 40 samples PyTorch gives >= 30% "
                     "(all 100: 0.850)"]
    found = gate.failures("int8", NEAR_TIES | {"top5_containment": 0.96})
    assert found == ["top-5 holds PyTorch's top-1 on 0.9600 < 0.97 of the samples"]


def test_without_confident_samples_all_samples_are_judged() -> None:
    record = NEAR_TIES | {"confident_top1_agreement": None, "confident_samples": 0}
    assert gate.failures("int8", record)[0].startswith("top-1 agreement 0.8500 < 0.97")
    assert gate.failures("int8", record | {"top1_agreement": 0.98}) == []


def test_with_labels_only_the_task_metric_decides() -> None:
    metric = {"name": "accuracy", "reference": 0.90, "artifact": 0.895}
    lossy = NEAR_TIES | {"confident_top1_agreement": 0.5, "top5_containment": 0.5,
                         "metric": metric}
    assert gate.failures("int8", lossy) == []
    assert gate.failures("int8", lossy | {"metric": metric | {"artifact": 0.88}}) == [
        "accuracy drops 2.00 points (> 1): 2 images of the 100 checked"]


def test_a_roc_auc_drop_is_not_counted_in_images() -> None:
    metric = {"name": "roc_auc", "reference": 0.90, "artifact": 0.87}
    assert gate.failures("int8", NEAR_TIES | {"metric": metric}) == [
        "roc_auc drops 3.00 points (> 1)"]


def test_fp32_must_match_with_or_without_labels() -> None:
    metric = {"name": "accuracy", "reference": 0.9, "artifact": 0.9}
    found = gate.failures("fp32", NEAR_TIES | {"metric": metric})
    assert found[0].startswith("top-1 agreement 0.8500 < 0.999")
    assert found[1] == "max abs error 2.00e-01 > 1e-03"


def test_compare_measures_top5_containment() -> None:
    verify = pytest.importorskip("visionrt.exporter.verify")
    spec = ModelSpec(arch="x", labels=tuple("abcdefgh"))
    reference = np.tile(np.arange(8, dtype=np.float32), (4, 1))  # top-1 is class 7
    candidate = reference.copy()
    candidate[0, 7] = -1.0  # class 7 falls out of the top-5
    candidate[1, 7] = 5.5  # class 7 second: a near miss
    report = verify.compare("m.onnx", "int8", "onnxruntime", reference, candidate, spec)
    assert report.top5_containment == 0.75 and report.top1_agreement == 0.5
    assert report.to_record()["top5_containment"] == 0.75
