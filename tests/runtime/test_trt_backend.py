"""Native TensorRT backend: the checks before deserializing, the slot pool, close(), TensorRT 11.

Runs against the TensorRT/CUDA double (tests/gpu_double), whose counters show what was (not)
created: a refused engine never reaches ``deserialize_cuda_engine``, a machine without a GPU never
gets a TensorRT Runtime. End-to-end parity is in test_trt_engines.py.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import run_in_threads
from runtime_helpers import MAX_BATCH, SIZE

from visionrt.bundle import Artifact, TensorInfo, load_bundle
from visionrt.errors import (
    BackendUnavailableError,
    IncompatibleEngineError,
    ModelTamperedError,
    RuntimeClosedError,
)
from visionrt.runtime import _cuda
from visionrt.runtime.base import BackendConfig, load_backend
from visionrt.runtime.classifier import Classifier
from visionrt.runtime.trt import MAX_CONTEXTS, engine_mismatch, read_engine

L4 = _cuda.DeviceInfo(0, "NVIDIA L4", (8, 9), 24 << 30)


def _artifact(record: dict | None, sha256: str = "0" * 64) -> Artifact:
    return Artifact(file="model.fp32.engine", format="tensorrt", precision="fp32", sha256=sha256,
                    bytes=4, inputs=(TensorInfo("image", "uint8", ("batch", SIZE, SIZE, 3)),),
                    outputs=(TensorInfo("logits", "float32", ("batch", 3)),), target="tensorrt",
                    tensorrt=record)


@pytest.mark.parametrize("record, installed, text", [
    (None, "10.13.0.35", "no TensorRT record"),
    # keys the exporter never wrote are not read
    ({"trt_version": "10.13.0.35", "compute_capability": "8.9"}, "10.13.0.35", "no TensorRT"),
    ({"version": "10.12.0.36", "compute_capability": "8.9"}, "10.13.0.35",
     "built with TensorRT 10.12.0.36 but TensorRT 10.13.0.35 is installed"),
    ({"version": "10.13.0.35", "compute_capability": "8.9"}, "11.4.0.106", "TensorRT 11.4.0.106"),
    ({"version": "10.13.0.35", "compute_capability": "7.5", "gpu": "Tesla T4"}, "10.13.0.35",
     r"compute capability 7.5 \(Tesla T4\) but cuda:0 is NVIDIA L4 with 8.9"),
    ({"version": "10.13.0.35", "compute_capability": "8.0", "hardware_compatible": True},
     "10.13.0.35", "compute capability 8.0"),
])
def test_mismatched_engines_are_named(record, installed, text) -> None:
    import re

    assert re.search(text, engine_mismatch(_artifact(record), installed, L4))


@pytest.mark.parametrize("record, installed", [
    ({"version": "10.13.0.35", "compute_capability": "8.9"}, "10.13.0.35"),
    ({"version": "10.13.0", "compute_capability": [8, 9]}, "10.13.0.1"),
])
def test_matching_engines_pass(record, installed) -> None:
    assert engine_mismatch(_artifact(record), installed, L4) is None


def test_read_engine_checks_the_bytes_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "model.fp32.engine"
    path.write_bytes(b"plan")
    record = {"version": "10.13.0.35", "compute_capability": "8.9"}
    ok = _artifact(record, hashlib.sha256(b"plan").hexdigest())
    assert read_engine(path, ok, "10.13.0.35", L4) == b"plan"
    with pytest.raises(ModelTamperedError, match="sha256 does not match"):
        read_engine(path, _artifact(record), "10.13.0.35", L4)
    with pytest.raises(IncompatibleEngineError, match="rebuild it on this machine"):
        read_engine(path, None, "10.13.0.35", L4)


# -- against the double ----------------------------------------------------------------------------
@pytest.fixture
def engine(trt_double, tiny_bundle: Path, tmp_path: Path) -> tuple[Path, Artifact]:
    """A copy of tiny_bundle with an fp32 engine built by visionrt's builder on the double."""
    from gpu_double.bundles import add_engine

    out = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    return out, add_engine(out, "fp32", "model.fp32.onnx", max_batch=MAX_BATCH)


def _load(bundle: Path, artifact: Artifact, **config):
    return load_backend("tensorrt", bundle / artifact.file, artifact,
                        BackendConfig(device="cuda:0", max_batch=MAX_BATCH, **config))


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_refused_engines_never_reach_deserialize(engine, trt_double) -> None:
    bundle, artifact = engine
    trt_double.state().counters.clear()
    foreign = replace(artifact, tensorrt={**artifact.tensorrt, "compute_capability": "9.0"})
    with pytest.raises(IncompatibleEngineError, match="compute capability 9.0"):
        _load(bundle, foreign)
    with pytest.raises(ModelTamperedError):
        _load(bundle, replace(artifact, sha256="f" * 64))
    assert "engines_deserialized" not in trt_double.state().counters
    assert "runtimes" not in trt_double.state().counters


def test_no_gpu_means_no_tensorrt_runtime(engine, trt_double) -> None:
    bundle, artifact = engine
    trt_double.configure(driver="no-driver")
    with pytest.raises(BackendUnavailableError, match="no usable NVIDIA driver"):
        _load(bundle, artifact)
    with pytest.raises(BackendUnavailableError, match="no usable NVIDIA driver"):
        from visionrt.runtime.trt import TensorRTBackend  # even when called directly

        TensorRTBackend(bundle / artifact.file, artifact, BackendConfig(device="cuda:0"))
    assert "runtimes" not in trt_double.state().counters


def test_deserialize_returning_none_is_a_typed_error(engine, trt_double) -> None:
    bundle, artifact = engine
    trt_double.configure(devices=[{"cc": [9, 0], "name": "NVIDIA H200"}])
    # The manifest claims the GPU it runs on, so only TensorRT itself can refuse the plan.
    claimed = replace(artifact, tensorrt={**artifact.tensorrt, "compute_capability": "9.0"})
    with pytest.raises(IncompatibleEngineError, match="could not deserialize"):
        _load(bundle, claimed)
    assert any("incompatible device" in line for _, line in trt_double.state().trt_log)


def test_gpu_memory_does_not_grow_with_threads(engine, trt_double) -> None:
    bundle, artifact = engine
    with _load(bundle, artifact) as backend:
        backend.infer(_batch(2))
        one_thread = trt_double.state().device_bytes_in_use()
        barrier = threading.Barrier(8)

        def work(seed: int) -> None:
            barrier.wait()
            for n in (1, 5, MAX_BATCH):
                backend.infer(_batch(n, seed))

        errors = run_in_threads(work, range(8))
        assert not errors, errors[0]
        assert backend.info().details["contexts"] <= MAX_CONTEXTS
        assert trt_double.state().device_bytes_in_use() <= MAX_CONTEXTS * one_thread
    gc.collect()
    assert trt_double.state().device_bytes_in_use() == 0  # close() freed every slot


def test_close_waits_for_the_call_in_flight(engine, trt_double, monkeypatch) -> None:
    from _gpu_double import trt_engine

    bundle, artifact = engine
    backend = _load(bundle, artifact)
    expected = backend.infer(_batch(3))
    started = threading.Event()
    run = trt_engine.ICudaEngine.run

    def slow_run(self, feeds):
        started.set()
        time.sleep(0.3)  # the GPU still works on this call when close() is called
        return run(self, feeds)

    monkeypatch.setattr(trt_engine.ICudaEngine, "run", slow_run)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(backend.infer(_batch(3))))
    worker.start()
    assert started.wait(5)
    backend.close()  # must not free buffers under the running call
    worker.join()
    np.testing.assert_array_equal(results[0], expected)
    with pytest.raises(RuntimeClosedError):
        backend.infer(_batch(1))


@pytest.mark.gpu_double(trt_version="11.4.0.106")
def test_tensorrt_11_builds_and_runs(engine, trt_double) -> None:
    import tensorrt

    assert not hasattr(tensorrt.BuilderFlag, "FP16")  # weak typing is gone in 11
    bundle, artifact = engine
    assert artifact.tensorrt["version"] == "11.4.0.106"
    with Classifier.load(bundle, backend="tensorrt", precision="fp32") as clf, \
            Classifier.load(bundle, backend="onnxruntime", device="cpu",
                            precision="fp32") as ref:
        np.testing.assert_allclose(clf(_batch(4)), ref(_batch(4)), atol=1e-5)


def test_an_engine_from_another_version_is_refused_by_tensorrt_too(engine, trt_double,
                                                                   tmp_path) -> None:
    bundle, _ = engine
    data = json.loads((bundle / "manifest.json").read_text())
    bundle_copy = Path(shutil.copytree(bundle, tmp_path / "other"))
    trt_double.configure(trt_version="10.13.3.9")
    for entry in data["artifacts"]:
        if entry["format"] == "tensorrt":  # a manifest edited to pass the visionrt check
            entry["tensorrt"]["version"] = "10.13.3.9"
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IncompatibleEngineError, match="could not deserialize"):
        Classifier.load(bundle_copy, backend="tensorrt", precision="fp32")
    assert load_bundle(bundle_copy).find(format="tensorrt")
