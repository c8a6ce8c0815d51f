"""TensorRT engine export: built, verified through the runtime with its manifest record, recorded.

Default set: against the TensorRT/CUDA double (tests/gpu_double) as TensorRT 10 and 11. Marked
gpu: the same export on whatever TensorRT and GPU this process sees.
"""

from __future__ import annotations

import sys

import pytest

from visionrt.bundle import load_bundle
from visionrt.errors import BackendUnavailableError, MissingDependencyError
from visionrt.exporter import trt
from visionrt.runtime import _cuda


def _export(tmp_path, model, spec, imagefolder, precisions="fp32,fp16,int8", **options):
    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    config = ExportConfig(out=tmp_path / "b", precisions=precisions, engine=True, max_batch=8,
                          calib_samples=18, verify_samples=18, calib_batch=6, **options)
    return export_model(model, spec, config, images=images_from_path(imagefolder, spec.labels))


def _check_engines(tmp_path, result, precisions: str) -> None:
    engines = {a.precision: a for a in load_bundle(tmp_path / "b").artifacts
               if a.format == "tensorrt"}
    assert set(engines) == set(precisions.split(","))
    for engine in engines.values():
        record = engine.tensorrt
        assert record["version"] and record["gpu"] and record["compute_capability"]
        assert record["profile"]["max"][0] == 8 and record["strongly_typed"]
        # a real comparison with PyTorch on the held-out images, not a number written in
        assert engine.parity["passed"] and engine.parity["backend"] == "tensorrt"
        assert engine.parity["samples"] == 18
    if "int8" in engines:  # TensorRT gets the symmetric graph, never the CPU's U8S8 one
        assert engines["int8"].tensorrt["built_from"] == "model.int8.trt.onnx"
    assert all(r.passed for r in result.reports if r.backend == "tensorrt")


@pytest.mark.parametrize("version, precisions", [("10.13.0.35", "fp32,fp16,int8"),
                                                 ("11.4.0.106", "fp32,int8")])
def test_engines_are_built_verified_and_recorded(trt_double, tmp_path, trained_tiny, tiny_spec,
                                                 tiny_imagefolder, version, precisions):
    trt_double.configure(trt_version=version)
    cache = tmp_path / "timing.cache"
    result = _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder, precisions,
                     timing_cache=cache)
    _check_engines(tmp_path, result, precisions)
    assert cache.is_file() and cache.stat().st_size > 0
    assert not (tmp_path / "b" / "timing.cache").exists()  # host-specific: not in the bundle


def test_a_timing_cache_from_another_gpu_is_refused_by_name(trt_double, tmp_path, trained_tiny,
                                                            tiny_spec, tiny_imagefolder):
    cache = tmp_path / "timing.cache"
    _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder, "fp32", timing_cache=cache)
    trt_double.configure(devices=[{"name": "NVIDIA H200", "cc": [9, 0]}])
    with pytest.raises(trt.EngineBuildError, match="refused the timing cache") as info:
        _export(tmp_path / "again", trained_tiny, tiny_spec, tiny_imagefolder, "fp32",
                timing_cache=cache)
    assert str(cache) in str(info.value.source)


def test_the_cpu_int8_graph_cannot_become_an_engine(trt_double, tiny_bundle):
    # What TensorRT's parser says about the U8S8 graph: int32 biases, uint8 zero points.
    bundle = load_bundle(tiny_bundle.bundle_dir)
    source = next(a for a in bundle.artifacts if a.target == "cpu")
    with pytest.raises(trt.EngineBuildError, match="cannot parse model.int8.onnx.*(symmetric|only activation types)"):
        trt.build_engine(tiny_bundle.bundle_dir / source.file, tiny_bundle.bundle_dir / "x.engine",
                         bundle.spec, trt.EngineConfig(max_batch=8, opt_batch=4),
                         precision="int8")


@pytest.mark.parametrize("driver, text", [
    ("no-device", "no CUDA device found"),
    ("no-driver", "no usable NVIDIA driver"),
])
def test_engine_export_without_gpu_leaves_no_bundle(trt_double, tmp_path, trained_tiny, tiny_spec,
                                                    tiny_imagefolder, driver, text):
    trt_double.configure(driver=driver)
    with pytest.raises(BackendUnavailableError, match=f"cannot build TensorRT engines: TensorRT "
                       f"needs an NVIDIA GPU, but {text}.*leave out --engine"):
        _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder, "fp32")
    assert not (tmp_path / "b").exists()
    assert "builders" not in trt_double.state().counters


def test_missing_tensorrt_names_the_extra(trt_double, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # a GPU, but import tensorrt fails
    with pytest.raises(MissingDependencyError, match=r"visionrt\[tensorrt\]"):
        trt.require_tensorrt()


@pytest.mark.gpu
def test_engines_on_this_machine(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder):
    reason = _cuda.tensorrt_unavailable_reason(0)
    if reason:
        pytest.skip(f"not on this machine: {reason}")
    result = _export(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder, "fp32,fp16,int8",
                     timing_cache=tmp_path / "timing.cache")
    _check_engines(tmp_path, result, "fp32,fp16,int8")
