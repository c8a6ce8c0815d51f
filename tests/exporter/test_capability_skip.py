"""Export on CPUs that cannot execute a precision: the check is skipped with its reason, recorded in
the manifest, and ``precision="auto"`` never picks the skipped combination. Every CPU kind is
reached through the capability seam (``openvino.cpu_capabilities``); the last test takes this
CPU's real path."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino")

from visionrt import gate  # noqa: E402
from visionrt.bundle import load_bundle  # noqa: E402
from visionrt.exporter.calibration import images_from_path  # noqa: E402
from visionrt.exporter.config import ExportConfig  # noqa: E402
from visionrt.exporter.pipeline import export_model  # noqa: E402
from visionrt.runtime import openvino  # noqa: E402

AMD_ZEN4 = frozenset({"FP32", "BF16", "INT8", "VNNI"})  # AVX-512 BF16 + VNNI, no AVX512-FP16
OLD_XEON = frozenset({"FP32", "INT8"})  # no BF16, no FP16, no VNNI


def _export(tmp_path, model, spec, images):
    config = ExportConfig(out=tmp_path / "bundle", precisions=("fp32", "fp16", "int8"),
                          max_batch=8, calib_samples=18, verify_samples=18, calib_batch=6)
    return export_model(model, spec, config, images=images_from_path(images, spec.labels))


@pytest.mark.parametrize("capabilities, reason", [
    (AMD_ZEN4, "this CPU executes f16 as bf16"),
    (OLD_XEON, "this CPU executes f16 as f32"),
])
def test_fp16_is_verified_where_it_runs_and_skipped_on_openvino(
        tmp_path, trained_tiny, tiny_spec, tiny_imagefolder, monkeypatch, capabilities, reason):
    monkeypatch.setattr(openvino, "cpu_capabilities", lambda: capabilities)
    result = _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder)
    assert [(s.artifact, s.backend, s.reason) for s in result.skipped] == [
        ("model.fp16.onnx", "openvino", reason)]
    parity = {a.precision + a.target: a.parity for a in load_bundle(result.bundle_dir).artifacts}
    fp16 = parity["fp16any"]
    assert fp16["skipped_backends"] == [{"backend": "openvino", "skipped": reason}]
    assert fp16["backend"] == "onnxruntime" and fp16["passed"] is True
    assert "other_backends" not in fp16
    for key in ("fp32any", "int8cpu"):  # the other artifacts still ran on both backends
        assert parity[key]["other_backends"][0]["backend"] == "openvino"
        assert "skipped_backends" not in parity[key]
    assert not gate.accepts("fp16", fp16, "openvino")[0]
    assert "executes f16" in gate.accepts("fp16", fp16, "openvino")[1]
    assert gate.accepts("fp16", fp16, "onnxruntime")[0]
    assert "model.fp16.onnx" not in result.auto_choice.split(":")[0]


def test_int8_without_vnni_is_checked_and_noted(tmp_path, trained_tiny, tiny_spec,
                                                tiny_imagefolder, monkeypatch):
    monkeypatch.setattr(openvino, "cpu_capabilities", lambda: OLD_XEON)
    result = _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder)
    int8 = [r for r in result.reports if r.artifact == "model.int8.onnx"]
    assert {r.backend for r in int8} == {"onnxruntime", "openvino"}
    on_openvino = next(r for r in int8 if r.backend == "openvino")
    assert "without VNNI" in on_openvino.backend_info["cpu_note"]


def test_this_cpu_records_what_its_capabilities_say(tiny_bundle):
    """No seam: the session bundle, exported on whatever CPU runs the tests."""
    gap = openvino.precision_gap("fp16")
    fp16 = next(a for a in load_bundle(tiny_bundle.bundle_dir).artifacts
                if a.precision == "fp16").parity
    if gap is None:
        assert fp16["other_backends"][0]["backend"] == "openvino"
        assert "skipped_backends" not in fp16
    else:
        assert fp16["skipped_backends"] == [{"backend": "openvino", "skipped": gap}]
