"""The parity gate: reports, tolerances and failures."""

from __future__ import annotations

import numpy as np
import pytest

from visionrt.errors import ParityError
from visionrt.exporter import verify
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="x", labels=("a", "b", "c"))
BINARY = ModelSpec(arch="x", labels=("neg", "pos"), output_activation="sigmoid")


def _logits(n=200, seed=0):
    return np.random.default_rng(seed).normal(0, 3, (n, 3)).astype(np.float32)


def test_identical_outputs_pass_with_metric():
    ref = _logits()
    labels = ref.argmax(1)
    report = verify.compare("m.onnx", "fp32", "onnxruntime", ref, ref.copy(), SPEC, labels=labels)
    assert report.passed and report.top1_agreement == 1.0 and report.max_abs_error == 0.0
    assert report.metric == {"name": "accuracy", "reference": 1.0, "artifact": 1.0, "drop": 0.0}
    record = report.to_record()
    assert record["reference"] == "torch" and record["backend"] == "onnxruntime"
    assert record["samples"] == 200


def test_top1_flips_fail_by_precision():
    ref = _logits()
    bad = ref.copy()
    flip = slice(0, 4)  # 2 % of the samples change their top-1
    bad[flip] = -bad[flip]
    assert verify.compare("m", "int8", "ort", ref, bad, SPEC).passed  # 0.98 >= 0.97
    fp16 = verify.compare("m", "fp16", "ort", ref, bad, SPEC)
    assert not fp16.passed and "top-1 agreement" in fp16.failures[0]


def test_metric_drop_over_one_point_fails():
    ref = _logits()
    labels = ref.argmax(1)
    bad = ref.copy()
    bad[:5] = -bad[:5]  # 2.5 % worse accuracy, agreement 0.975 passes on its own
    report = verify.compare("m", "int8", "ort", ref, bad, SPEC, labels=labels)
    assert not report.passed
    assert report.failures == ("accuracy drops 2.50 points (> 1): 5 images of the 200 checked",)


def test_fp32_max_abs_error_and_non_finite():
    ref = _logits()
    shifted = ref + np.where(np.arange(3) == 0, 0.05, 0.0).astype(np.float32)
    assert not verify.compare("m", "fp32", "ort", ref, shifted, SPEC).passed
    nan = ref.copy()
    nan[0, 0] = np.nan
    report = verify.compare("m", "fp32", "ort", ref, nan, SPEC)
    assert not report.passed and "non-finite outputs" in report.failures


def test_sigmoid_head_uses_roc_auc():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 2, (100, 1)).astype(np.float32)
    labels = (ref[:, 0] + rng.normal(0, 1, 100) > 0).astype(int)
    report = verify.compare("m", "fp32", "ort", ref, ref.copy(), BINARY, labels=labels)
    assert report.metric["name"] == "roc_auc" and report.passed
    probs = verify.probabilities(ref, "sigmoid")
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_gate_raises_unless_allowed():
    ref = _logits()
    bad = verify.compare("model.int8.onnx", "int8", "openvino", ref, -ref, SPEC)
    good = verify.compare("model.fp32.onnx", "fp32", "onnxruntime", ref, ref, SPEC)
    with pytest.raises(ParityError, match="model.int8.onnx on openvino: top-1 agreement"):
        verify.gate([good, bad], allow_mismatch=False)
    assert verify.gate([good, bad], allow_mismatch=True) == [bad]
    assert verify.gate([good], allow_mismatch=False) == []


def test_parity_record_nests_other_backends():
    ref = _logits()
    a = verify.compare("m", "fp32", "onnxruntime", ref, ref, SPEC)
    b = verify.compare("m", "fp32", "openvino", ref, -ref, SPEC)
    record = verify.parity_record([a, b])
    assert record["backend"] == "onnxruntime" and record["passed"] is False
    assert record["other_backends"][0]["backend"] == "openvino"
    assert "FAILED" in b.summary() and "ok" in a.summary()
