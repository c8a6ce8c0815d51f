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
