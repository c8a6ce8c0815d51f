"""`visionrt export` as a user runs it: a run dir in, a verified bundle (and Triton repo) out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from visionrt.bundle import load_bundle  # noqa: E402
from visionrt.cli import app  # noqa: E402
from visionrt.errors import ConfigError  # noqa: E402


def test_export_run_dir_with_default_calibration_and_triton(tmp_path, run_dir):
    out, repo = tmp_path / "bundle", tmp_path / "triton"
    result = CliRunner().invoke(app, [
        "export", str(run_dir), "--out", str(out), "--precision", "fp32,int8", "--max-batch", "4",
        "--calib-samples", "12", "--verify-samples", "12", "--triton", str(repo),
        "--allow-mismatch",  # random weights: int8 top-1 may flip on near-ties
    ], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "parity vs PyTorch" in result.output and "model.int8.trt.onnx" in result.output
    # the table shows what the gate judges: top-1 on the confident samples (3 classes: all of
    # them) and top-5 containment
    assert "sure top-1" in result.output and "top-5" in result.output
    fp32_row = next(line for line in result.output.splitlines()
                    if "model.fp32.onnx" in line and "onnxruntime" in line)
    assert "1.000 (12)" in fp32_row, fp32_row
    bundle = load_bundle(out)
    assert [(a.precision, a.target) for a in bundle.artifacts] == [
        ("fp32", "any"), ("int8", "cpu"), ("int8", "tensorrt")]
    assert Path(bundle.calibration["source"]).name == "data"  # the run's config.json "data"
    assert bundle.calibration["samples"] == 12
    assert bundle.source["kind"] == "run" and bundle.source["arch"] == "resnet10t"
    fp32 = bundle.artifacts[0].parity
    assert fp32["passed"] and fp32["inputs"] == "images" and fp32["samples"] == 12
    # no engine: the visionrt kind (python backend running the runtime on the bundle)
    assert 'backend: "python"' in (repo / "bundle" / "config.pbtxt").read_text()
    assert (repo / "bundle" / "1" / "model.py").is_file()
    assert load_bundle(repo / "bundle" / "1" / "bundle").artifacts == bundle.artifacts


def test_triton_backend_tensorrt_needs_engines(tmp_path, run_dir):
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b"),
                                      "--triton", str(tmp_path / "repo"), "--triton-backend",
                                      "tensorrt"])
    assert isinstance(result.exception, ConfigError)
    assert "--triton-backend tensorrt needs TensorRT engines: add --engine" in str(
        result.exception)


def test_export_says_what_it_skipped_picks_and_doubts(tmp_path, run_dir, monkeypatch):
    """On a CPU without AVX512-FP16 (AMD EPYC): no abort, a skipped row, auto's pick, warnings
    about the few images, and one progress line per stage (the output is not a terminal)."""
    pytest.importorskip("openvino")
    from visionrt.runtime import openvino

    monkeypatch.setattr(openvino, "cpu_capabilities",
                        lambda: frozenset({"FP32", "BF16", "INT8", "VNNI"}))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(out), "--max-batch",
                                      "4", "--allow-mismatch"])  # random weights: near-ties
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    skipped = [x for x in lines if "skipped" in x]
    assert len(skipped) == 1 and "model.fp16.onnx" in skipped[0] and "openvino" in skipped[0]
    assert "skipped: this CPU executes f16 as bf16" in skipped[0]
    pick = next(x for x in lines if x.startswith("--precision auto"))
    assert "picks here: model." in pick and "fp16" not in pick.split(":")[1]
    assert "int8 was calibrated on 18 of the 128 images asked (--calib-samples)" in result.output
    assert "the parity check used 18 of the 100 images asked (--verify-samples)" in result.output
    for stage in ("writing model.fp32.onnx ...", "converting to model.fp16.onnx ...",
                  "calibrating int8 on 18 images", "checking model.int8.onnx against PyTorch"):
        assert any(stage in x for x in lines), stage


def test_bad_precision_is_a_config_error(tmp_path, run_dir):
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b"),
                                      "--precision", "fp8"])
    assert isinstance(result.exception, ConfigError)
    assert "fp8" in str(result.exception) and "fp32,fp16,int8" in str(result.exception)


def test_user_error_is_one_line_and_exit_1(tmp_path, run_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "from visionrt.cli import main; main()", "export", str(run_dir),
         "--out", str(tmp_path / "b"), "--calib", str(empty)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "contains no images" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()


def test_imagenet_export_takes_a_weights_file(tmp_path, monkeypatch):
    """The no-weights error says "pass a file: --weights ...": export has that option."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from visionrt.errors import WeightsNotFoundError

    for variable in ("HF_HUB_CACHE", "HF_HOME", "TORCH_HOME"):  # no cached weights to find
        monkeypatch.setenv(variable, str(tmp_path / "empty-cache"))
    missing = CliRunner().invoke(app, ["export", "imagenet:resnet10t", "--out",
                                       str(tmp_path / "none"), "--precision", "fp32"])
    assert isinstance(missing.exception, WeightsNotFoundError)
    assert "--weights /path/to/resnet10t.safetensors" in str(missing.exception)
    assert "--weights none" not in str(missing.exception)  # a training choice, not an export one

    weights = tmp_path / "resnet10t.safetensors"
    model = timm.create_model("resnet10t", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", "imagenet:resnet10t", "--weights", str(weights),
                                      "--out", str(out), "--precision", "fp32",
                                      "--max-batch", "2"])
    assert result.exit_code == 0, result.output
    assert load_bundle(out).source["weights"] == str(weights)


def test_parity_failures_are_printed_whole(tmp_path, monkeypatch):
    """A failure line is never wrapped at the table's width (it was the table's caption)."""
    from types import SimpleNamespace

    from visionrt.exporter import pipeline
    from visionrt.exporter.verify import ParityReport

    failure = ("top-1 agreement 0.7857 < 0.97 (0.943 on the 35 samples PyTorch gives >= 30%); "
               "accuracy drops 11.11 points (> 1)")
    reports = tuple(ParityReport(
        artifact=f"model.{p}.onnx", precision=p, backend="onnxruntime", samples=84,
        inputs="images", max_abs_error=0.2, mean_abs_error=0.01, top1_agreement=agreement,
        confident_top1_agreement=None, confident_samples=0, metric=None, tolerance={},
        passed=agreement == 1.0, failures=() if agreement == 1.0 else (failure,))
        for p, agreement in (("fp32", 1.0), ("int8", 0.7857)))
    result = SimpleNamespace(
        bundle_dir=tmp_path / "b", reports=reports, skipped=(), warnings=(), triton_dir=None,
        artifacts=tuple(SimpleNamespace(file=r.artifact) for r in reports), auto_choice="fp32")
    monkeypatch.setattr(pipeline, "export", lambda config, progress: result)
    done = CliRunner().invoke(app, ["export", "imagenet:tf_efficientnet_lite0", "--out",
                                    str(tmp_path / "b"), "--allow-mismatch"])
    assert done.exit_code == 0, done.output
    assert f"model.int8.onnx [onnxruntime]: {failure}" in done.output.splitlines()
    assert "model.fp32.onnx [onnxruntime]:" not in done.output
