"""export()/export_model(): the bundle, its manifest, and clean failures (no half bundle)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytest.importorskip("torch")

from visionrt import gate  # noqa: E402
from visionrt.bundle import load_bundle  # noqa: E402
from visionrt.errors import (  # noqa: E402
    BundleError,
    ConfigError,
    DataValidationError,
    ParityError,
    WeightsMismatchError,
)
from visionrt.exporter import verify  # noqa: E402
from visionrt.exporter.calibration import images_from_path  # noqa: E402
from visionrt.exporter.config import ExportConfig  # noqa: E402
from visionrt.exporter.pipeline import export, export_model  # noqa: E402


def test_bundle_manifest(tiny_bundle, tiny_spec):
    bundle = load_bundle(tiny_bundle.bundle_dir)
    files = [a.file for a in bundle.artifacts]
    assert files == ["model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx",
                     "model.int8.trt.onnx"]
    assert bundle.spec.labels == tiny_spec.labels and bundle.spec.input_dtype == "uint8"
    for artifact in bundle.artifacts:
        bundle.verified_path(artifact)  # sha256 matches
        assert artifact.batch == {"min": 1, "max": 8}
        assert artifact.inputs[0].name == "image" and artifact.outputs[0].name == "logits"
        parity = artifact.parity
        assert parity["reference"] == "torch" and parity["backend"] == "onnxruntime"
        assert parity["samples"] == 18 and parity["passed"] is True
        assert parity["metric"]["name"] == "accuracy"
    assert bundle.calibration["method"] == "minmax" and bundle.calibration["samples"] == 18
    assert bundle.source["kind"] == "test" and "torch" in bundle.source["versions"]
    config = json.loads((tiny_bundle.bundle_dir / "export_config.json").read_text())
    assert config["precisions"] == ["fp32", "fp16", "int8"]


def test_reports_cover_every_artifact_and_backend(tiny_bundle):
    backends = verify.onnx_backends()
    checked = {(r.artifact, r.backend) for r in tiny_bundle.reports}
    skipped = {(s.artifact, s.backend) for s in tiny_bundle.skipped}
    assert len(checked) + len(skipped) == 4 * len(backends) and not checked & skipped
    assert all(r.passed for r in tiny_bundle.reports)


def test_parity_failure_leaves_no_bundle(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder,
                                         monkeypatch):
    monkeypatch.setitem(verify.TOLERANCES, "fp32", gate.Tolerance(top1_agreement=1.01))
    out = tmp_path / "out" / "bundle"
    config = ExportConfig(out=out, precisions="fp32", verify_samples=6)
    with pytest.raises(ParityError, match="model.fp32.onnx on onnxruntime"):
        export_model(trained_tiny, tiny_spec, config,
                     images=images_from_path(tiny_imagefolder, tiny_spec.labels))
    assert not out.exists() and os.listdir(tmp_path / "out") == []
    allowed = ExportConfig(out=out, precisions="fp32", verify_samples=6, allow_mismatch=True)
    result = export_model(trained_tiny, tiny_spec, allowed,
                          images=images_from_path(tiny_imagefolder, tiny_spec.labels))
    assert load_bundle(out).artifacts[0].parity["passed"] is False
    assert not result.reports[0].passed


def test_int8_without_images_is_refused(tmp_path, trained_tiny, tiny_spec):
    with pytest.raises(ConfigError, match="--calib"):
        export_model(trained_tiny, tiny_spec, ExportConfig(out=tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_calibration_folder_without_images(tmp_path, run_dir):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DataValidationError, match="contains no images"):
        export(ExportConfig(out=tmp_path / "b", source=str(run_dir), calib=empty))
    assert not (tmp_path / "b").exists()


def test_run_dir_without_weights(tmp_path, run_dir):
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors not found"):
        export(ExportConfig(out=tmp_path / "b", source=str(broken), precisions="fp32"))
    assert not (tmp_path / "b").exists()


def test_checkpoint_that_does_not_fit_the_arch(tmp_path, run_dir):
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    spec = json.loads((broken / "spec.json").read_text())
    spec["labels"] = ["a", "b", "c", "d"]  # 4 outputs; the weights have 3
    (broken / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(WeightsMismatchError, match="other shapes"):
        export(ExportConfig(out=tmp_path / "b", source=str(broken), precisions="fp32"))
    assert not (tmp_path / "b").exists()


def test_unknown_source(tmp_path):
    with pytest.raises(ConfigError, match="neither a run directory nor imagenet:ARCH") as caught:
        export(ExportConfig(out=tmp_path / "b", source=str(tmp_path / "missing")))
    # its example works offline: the embedded backbone's weights ship as a pip package
    assert "imagenet:tf_efficientnet_lite0" in str(caught.value)


def test_weights_option_is_for_imagenet_sources_only(tmp_path, run_dir):
    with pytest.raises(ConfigError, match="--weights .* applies to imagenet:ARCH only"):
        export(ExportConfig(out=tmp_path / "b", source=str(run_dir),
                            weights=tmp_path / "w.safetensors"))


def test_config_errors_name_the_flag_as_typed(tmp_path):
    with pytest.raises(ConfigError, match=r"^--calib-samples 0 is invalid"):
        ExportConfig(out=tmp_path, calib_samples=0)
    with pytest.raises(ConfigError, match=r"^--precision fp8 is not supported"):
        ExportConfig(out=tmp_path, precisions="fp8")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(tmp_path, trained_tiny, tiny_spec):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(BundleError, match="cannot write into"):
            export_model(trained_tiny, tiny_spec,
                         ExportConfig(out=locked / "sub" / "b", precisions="fp32"))
    finally:
        locked.chmod(0o700)


def test_output_that_is_a_file(tmp_path, trained_tiny, tiny_spec):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="cannot write into"):
        export_model(trained_tiny, tiny_spec,
                     ExportConfig(out=blocker / "b", precisions="fp32"))
    assert blocker.read_text() == "x"


def test_existing_output_needs_overwrite(tiny_bundle, trained_tiny, tiny_spec):
    with pytest.raises(BundleError, match="already exists"):
        export_model(trained_tiny, tiny_spec,
                     ExportConfig(out=tiny_bundle.bundle_dir, precisions="fp32"))
