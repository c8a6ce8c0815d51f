"""TensorRT engines: a clear error without a GPU; real builds on GPU machines (marker gpu)."""

from __future__ import annotations

import pytest

from visionrt.errors import BackendUnavailableError, MissingDependencyError
from visionrt.exporter import trt


def _gpu_reason() -> str | None:
    count, why = trt.cuda_devices()
    if not count:
        return f"no CUDA device: {why}"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed (pip install 'visionrt[tensorrt]')"
    return None


def test_cuda_probe_never_raises():
    count, why = trt.cuda_devices()
    assert count >= 0 and (count > 0 or why)


def test_require_tensorrt_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(trt, "cuda_devices", lambda: (0, "no CUDA device is visible (test)"))
    with pytest.raises(BackendUnavailableError, match="need an NVIDIA GPU.*no CUDA device"):
        trt.require_tensorrt()


def test_engine_export_without_gpu_leaves_no_bundle(tmp_path, trained_tiny, tiny_spec,
                                                    tiny_imagefolder, monkeypatch):
    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    monkeypatch.setattr(trt, "cuda_devices", lambda: (0, "no CUDA device is visible (test)"))
    config = ExportConfig(out=tmp_path / "b", precisions="fp32", engine=True, verify_samples=4)
    with pytest.raises(BackendUnavailableError, match="leave out --engine"):
        export_model(trained_tiny, tiny_spec, config,
                     images=images_from_path(tiny_imagefolder, tiny_spec.labels))
    assert not (tmp_path / "b").exists()


def test_missing_tensorrt_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setattr(trt, "cuda_devices", lambda: (1, ""))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match=r"visionrt\[tensorrt\]"):
        trt.require_tensorrt()


@pytest.mark.gpu
@pytest.mark.parametrize("precisions", ["fp32", "fp32,fp16", "fp32,int8"])
def test_engines_build_and_match_pytorch(tmp_path, trained_tiny, tiny_spec, tiny_imagefolder,
                                         precisions):
    reason = _gpu_reason()
    if reason:
        pytest.skip(reason)
    from visionrt.bundle import load_bundle
    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    cache = tmp_path / "timing.cache"
    config = ExportConfig(out=tmp_path / "b", precisions=precisions, engine=True, max_batch=8,
                          calib_samples=18, verify_samples=18, timing_cache=cache)
    result = export_model(trained_tiny, tiny_spec, config,
                          images=images_from_path(tiny_imagefolder, tiny_spec.labels))
    engines = [a for a in load_bundle(tmp_path / "b").artifacts if a.format == "tensorrt"]
    assert {a.precision for a in engines} == set(precisions.split(","))
    for engine in engines:
        record = engine.tensorrt
        assert record["version"] and record["gpu"] and record["compute_capability"]
        assert record["profile"]["max"][0] == 8 and engine.parity["passed"]
    assert cache.is_file() and cache.stat().st_size > 0
    assert all(r.passed for r in result.reports if r.backend == "tensorrt")
