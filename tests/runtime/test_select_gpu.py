"""Choices on a GPU: which graph each GPU backend gets, and what a user reads when it cannot run.

The artifact rules run on in-memory manifests; the device rules against the TensorRT/CUDA double
(one GPU with TensorRT, or a machine whose driver is missing) and against this machine as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import tiny_spec

from visionrt.bundle import Artifact
from visionrt.errors import BackendUnavailableError, ConfigError
from visionrt.runtime import _select
from visionrt.runtime.classifier import Classifier

VERIFIED = {"top1_agreement": 1.0, "passed": True}


def _artifact(file: str, fmt: str, precision: str, target: str) -> Artifact:
    return Artifact(file=file, format=fmt, precision=precision, sha256="0" * 64, bytes=1,
                    inputs=(), outputs=(), batch={"min": 1, "max": 8}, target=target,
                    parity=VERIFIED, tensorrt={"version": "10.13.0.35",
                                               "compute_capability": "8.9"}
                    if fmt == "tensorrt" else None)


SOURCE = _select.ModelSource(Path("bundle"), tiny_spec(), Path("bundle"), (
    _artifact("model.fp32.onnx", "onnx", "fp32", "any"),
    _artifact("model.fp16.onnx", "onnx", "fp16", "any"),
    _artifact("model.int8.onnx", "onnx", "int8", "cpu"),
    _artifact("model.int8.trt.onnx", "onnx", "int8", "tensorrt"),
    _artifact("model.int8.engine", "tensorrt", "int8", "tensorrt"),
))


@pytest.fixture
def only(monkeypatch):
    """Pretend exactly the given backends can run on cuda:0."""
    def use(*names: str) -> None:
        monkeypatch.setattr(_select, "backend_unavailable_reason",
                            lambda name, device: None if name in names else "not here")
    return use


def test_onnxruntime_cuda_auto_takes_fp16_never_an_int8_graph(only) -> None:
    only("onnxruntime")
    choice = _select.choose(SOURCE, "auto", "auto", "cuda:0")
    assert (choice.backend, choice.artifact.file) == ("onnxruntime", "model.fp16.onnx")
    assert "U8S8 graph is tuned for CPUs" in choice.reason
    with pytest.raises(ConfigError, match="int8 on onnxruntime's CUDA provider"):
        _select.choose(SOURCE, "onnxruntime", "int8", "cuda:0")


def test_the_symmetric_int8_graph_goes_only_to_tensorrt(only, trt_double) -> None:
    only("onnxruntime-trt")
    choice = _select.choose(SOURCE, "onnxruntime-trt", "auto", "cuda:0")
    assert choice.artifact.file == "model.int8.trt.onnx"
    only("tensorrt")
    assert _select.choose(SOURCE, "auto", "auto", "cuda:0").artifact.file == "model.int8.engine"
    only("onnxruntime", "openvino")
    for backend in ("onnxruntime", "openvino"):
        choice = _select.choose(SOURCE, backend, "int8", "cpu")
        assert choice.artifact.file == "model.int8.onnx"  # CPUs get the U8S8 graph


def test_explicit_tensorrt_without_tensorrt_says_so(tiny_bundle: Path) -> None:
    # this machine has no TensorRT: the user reads that, not "TensorRT needs device='cuda'"
    for device in ("auto", "cuda"):
        with pytest.raises(BackendUnavailableError, match="TensorRT is not installed "
                           r"\(pip install 'visionrt\[tensorrt\]'"):
            Classifier.load(tiny_bundle, backend="tensorrt", device=device)


def test_explicit_tensorrt_with_a_driver_problem_says_so(tiny_bundle: Path, trt_double) -> None:
    trt_double.configure(driver="old-driver")
    with pytest.raises(BackendUnavailableError, match="TensorRT needs an NVIDIA GPU, but no "
                       "usable NVIDIA driver"):
        Classifier.load(tiny_bundle, backend="tensorrt")


def test_auto_device_says_why_the_gpu_was_skipped(tiny_bundle: Path, trt_double) -> None:
    trt_double.configure(driver="no-driver")
    with Classifier.load(tiny_bundle, precision="fp32", backend="onnxruntime") as clf:
        assert clf.info()["device"] == "cpu"
        assert "device auto: no GPU (no usable NVIDIA driver" in clf.info()["reason"]
    trt_double.configure(driver="ok")  # a GPU with TensorRT, but this bundle has no engine
    with Classifier.load(tiny_bundle, precision="fp32") as clf:
        assert clf.info()["device"] == "cpu"
        assert "device auto: cuda:0 skipped" in clf.info()["reason"]
