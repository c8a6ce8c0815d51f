"""Bench rows carry the accuracy the export measured for the artifact they ran (issue 14)."""

from __future__ import annotations

import pytest
from runtime_helpers import tiny_spec, write_bundle

from visionrt.bench.parity import artifact_parity, describe
from visionrt.bench.run import BenchConfig, run_bench

pytest.importorskip("onnx")


def test_each_row_carries_its_artifacts_parity(tmp_path):
    bundle = write_bundle(tmp_path / "b", tiny_spec(), int8_top1=0.93)
    report = run_bench(BenchConfig(model=bundle, backends=("onnxruntime",), batch_sizes=(2,),
                                   precisions=("fp32", "int8"), duration=0.1, warmup=0.02))
    found = {r.requested_precision: r.parity for r in report.results}
    assert found["fp32"]["value"] == 1.0 and found["int8"]["value"] == 0.93
    assert found["int8"]["metric"] == "top1_agreement"
    assert report.results[-1].to_dict()["parity"]["value"] == 0.93


def test_task_metric_is_preferred_and_the_backends_own_report_is_used(tmp_path):
    import json

    bundle = write_bundle(tmp_path / "b", tiny_spec(), int8_top1=0.9)
    manifest = json.loads((bundle / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["file"] == "model.int8.onnx")
    int8["parity"]["other_backends"] = [{
        "backend": "openvino", "samples": 64, "top1_agreement": 0.8,
        "metric": {"name": "accuracy", "reference": 0.91, "artifact": 0.905}}]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    ov = artifact_parity(bundle, "openvino", "/x/model.int8.onnx")
    assert (ov["metric"], ov["value"], ov["checked_on"]) == ("accuracy", 0.905, "openvino")
    assert describe(ov) == "acc 0.905 (-0.5)"
    ort = artifact_parity(bundle, "onnxruntime", "model.int8.onnx")
    assert describe(ort) == "top-1 0.900"
    assert artifact_parity(bundle / "model.fp32.onnx", "onnxruntime", "model.fp32.onnx") is None
    assert describe(None) == "-"
