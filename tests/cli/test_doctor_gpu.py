"""doctor, the bench environment, the exporter and the runtime ask one CUDA probe, and doctor says
what of the GPU path has run on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import visionrt
from visionrt.bench import environment
from visionrt.cli import app, diagnostics
from visionrt.cli.doctor import DETAIL_WIDTH


@pytest.mark.parametrize("call", ["cudaGetDeviceCount", "cudaGetDeviceProperties",
                                  "cudaGetErrorString", "cudaSuccess", "from cuda"])
def test_one_cuda_layer_in_the_package(call) -> None:
    # Every "is there a GPU?" goes through visionrt.runtime._cuda.probe(), every CUDA result
    # through _cuda.check(): no other module touches cuda-python.
    root = Path(visionrt.__file__).parent
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if call in p.read_text(encoding="utf-8"))
    assert callers == ["runtime/_cuda.py"]


@pytest.mark.parametrize("driver", ["ok", "no-driver"])
def test_doctor_bench_exporter_and_runtime_agree(trt_double, driver) -> None:
    from visionrt.exporter import trt
    from visionrt.runtime.base import backend_unavailable_reason

    trt_double.configure(driver=driver)
    diag = diagnostics.collect(check_providers=False)
    tensorrt = next(b for b in diag.backends if b.name == "tensorrt")
    runtime_reason = backend_unavailable_reason("tensorrt", "cuda:0")
    if driver == "ok":
        assert diag.gpus == ["0: NVIDIA Double L4 (compute 8.9)"]
        assert environment.gpu_name() == "NVIDIA Double L4"
        assert tensorrt.usable and runtime_reason is None
        assert trt.require_tensorrt().__version__ == "10.13.0.35"
    else:
        assert diag.gpus == [] and environment.gpu_name() is None
        assert not tensorrt.usable and tensorrt.detail == runtime_reason
        assert "no usable NVIDIA driver" in runtime_reason
        assert any("no GPU: no usable NVIDIA driver" in w for w in diag.warnings)
        with pytest.raises(visionrt.errors.BackendUnavailableError,
                           match="no usable NVIDIA driver"):
            trt.require_tensorrt()


def test_doctor_states_what_has_run_on_a_gpu() -> None:
    result = CliRunner().invoke(app, ["doctor", "--format", "json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)["gpu_path"]
    assert status == diagnostics.gpu_path_status()
    if not diagnostics.gpu_checks()["full"]:
        assert status == ("built against the TensorRT 10/11 API and exercised in CI with a "
                          "test double; not yet run on a GPU")


def test_the_statement_follows_the_recorded_runs() -> None:
    cuda_only = {"gpu": "NVIDIA H200", "date": "2026-05-01"}
    text = diagnostics.gpu_path_status({"full": None, "no_tensorrt": cuda_only})
    assert text.startswith("built against the TensorRT 10/11 API") and "not yet run on a GPU " \
        "with TensorRT (its CUDA layer, without TensorRT, ran on NVIDIA H200 on 2026-05-01)" in text
    full = {"gpu": "NVIDIA L4", "tensorrt": "10.13.0.35", "date": "2026-06-01"}
    assert diagnostics.gpu_path_status({"full": full, "no_tensorrt": None}) == (
        "run end to end on a GPU (NVIDIA L4, TensorRT 10.13.0.35) on 2026-06-01 by "
        "benchmarks/gpu_check.sh")


def _gpu_status(tmp_path: Path, monkeypatch):
    import importlib.util
    import shutil

    root = Path(visionrt.__file__).parents[1]
    spec = importlib.util.spec_from_file_location("gpu_status", root / "benchmarks/gpu_status.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, source in (("RECORD", module.RECORD), ("README", module.README)):
        monkeypatch.setattr(module, name, Path(shutil.copy(source, tmp_path / source.name)))
    return module


def test_readme_states_what_has_run_on_a_gpu() -> None:
    root = Path(visionrt.__file__).parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    assert (f"<!-- gpu-status -->The TensorRT path is {diagnostics.gpu_path_status()}."
            "<!-- /gpu-status -->") in text


def test_a_passed_gpu_run_is_recorded_and_a_rehearsal_is_not(tmp_path, monkeypatch,
                                                              trt_double) -> None:
    status = _gpu_status(tmp_path, monkeypatch)
    before = status.RECORD.read_text()
    assert status.record("rehearse", tmp_path) == 0 and status.RECORD.read_text() == before
    assert status.record("full", tmp_path) == 0
    full = json.loads(status.RECORD.read_text())["full"]
    assert (full["gpu"], full["tensorrt"]) == ("NVIDIA Double L4", "10.13.0.35")
    assert "The TensorRT path is run end to end on a GPU (NVIDIA Double L4, TensorRT " \
        "10.13.0.35)" in status.README.read_text()


def test_piped_doctor_wraps_backend_details_in_their_cell(trt_double) -> None:
    # The TensorRT reason without a driver is several hundred characters; it must not make a line
    # that long when doctor's output goes to a file.
    trt_double.configure(driver="no-driver")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    table = result.output.split("Backends", 1)[1].split("warning:", 1)[0]
    assert max(map(len, table.splitlines())) <= DETAIL_WIDTH + 40
    assert "no usable NVIDIA driver" in " ".join(table.split())
