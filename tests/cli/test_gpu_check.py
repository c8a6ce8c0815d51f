"""benchmarks/gpu_check.sh: its verdict rules, and what it says on a machine that cannot run a mode.
The rehearsal itself runs in CI (.ci/run) and is the slow test at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check_helper",
                                                  ROOT / "benchmarks" / "_gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _junit(path: Path, skip_message: str | None) -> None:
    skipped = f'<skipped message="{skip_message}"/>' if skip_message else ""
    path.write_text(f'<testsuites><testsuite><testcase name="t">{skipped}</testcase>'
                    "</testsuite></testsuites>")


@pytest.mark.parametrize("steps, skip, parity, ok", [
    ("a\tok\nb\tnot on this machine: no CUDAExecutionProvider\n", None, None, True),
    ("a\tok\nb\tnot on this machine: x\n", "not on this machine: no GPU", None, True),
    ("a\tfailed (exit 1; see a.log)\n", None, None, False),
    ("a\tok\n", "needs a newer onnx", None, False),  # a skip for another reason fails
    ("a\tok\n", None, (False, True), False),  # the engine fails where ORT passed: GPU path broke
    ("a\tok\n", None, (False, False), True),  # both fail: the model's (e.g. int8 calibration)
])
def test_the_verdict(tmp_path, capsys, steps, skip, parity, ok) -> None:
    (tmp_path / "steps.tsv").write_text(steps)
    _junit(tmp_path / "gpu-tests.xml", skip)
    if parity:
        (tmp_path / "bundle").mkdir()
        engine_ok, source_ok = parity
        record = {"passed": engine_ok, "top1_agreement": 0.9}
        (tmp_path / "bundle" / "manifest.json").write_text(json.dumps({"artifacts": [
            {"file": "m.onnx", "format": "onnx", "parity": {"passed": source_ok,
                                                            "top1_agreement": 0.9}},
            {"file": "m.engine", "format": "tensorrt", "parity": record,
             "tensorrt": {"built_from": "m.onnx"}}]}))
    _bench(tmp_path, "tensorrt")
    assert _helper().summary("rehearse", tmp_path) == (0 if ok else 1)
    assert ("overall: OK" if ok else "overall: FAILED") in capsys.readouterr().out


def _bench(out: Path, *backends: str) -> None:
    rows = [{"backend": b, "precision": "fp32", "device": "cuda", "batch_size": 1, "mode": "engine",
             "throughput": 10.0, "latency_ms": {"p50": 1.0}} for b in backends]
    (out / "bench.json").write_text(json.dumps({"results": rows}))


@pytest.mark.parametrize("mode, backends, ok", [
    ("rehearse", (), False),  # no benchmark rows at all
    ("no-tensorrt", ("tensorrt",), False),  # the torch CUDA baseline is part of this mode
    ("no-tensorrt", ("tensorrt", "torch"), True),
])
def test_the_benchmark_rows_a_mode_needs(tmp_path, mode, backends, ok) -> None:
    (tmp_path / "steps.tsv").write_text("bench\tok\n")
    _bench(tmp_path, *backends)
    assert _helper().summary(mode, tmp_path) == (0 if ok else 1)


@pytest.mark.parametrize("args, text", [
    (["--bogus"], "unknown option --bogus"),
    (["--no-tensorrt"], "CUDA: "),
    ([], "TensorRT"),
])
def test_a_machine_that_cannot_run_the_mode_says_why_and_exits_2(tmp_path, args, text) -> None:
    from visionrt.runtime import _cuda

    if args != ["--bogus"] and _cuda.unavailable_reason(0) is None:
        pytest.skip("not on this machine: it has a GPU, so the check would run for minutes")
    env = {**os.environ, "PYTHON": sys.executable, "VISIONRT_GPU_DOUBLE": "{}"}
    result = subprocess.run(["bash", str(SCRIPT), *args, str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert text in result.stderr


@pytest.mark.slow
def test_the_rehearsal_reaches_its_end(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "overall: OK" in result.stdout
