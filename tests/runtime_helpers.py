"""Helpers for the runtime tests: tiny ONNX bundles built with torch (not with the exporter) and a
numpy FakeBackend. A uniquely named module, so `import runtime_helpers` cannot pick up another
test folder's conftest.

The graphs follow the cross-area contract: input ``image`` uint8 NHWC with a dynamic ``batch``
dim, normalisation inside the graph, output ``logits`` float32; ModelSpec in ``metadata_props``.
Tests may import torch; the runtime under test never does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visionrt.bundle import describe_artifact, write_manifest
from visionrt.spec import ModelSpec

SIZE = 32
MAX_BATCH = 16
LABELS = ("circle", "square", "triangle")


def tiny_spec(labels: tuple[str, ...] = LABELS, activation: str = "softmax") -> ModelSpec:
    return ModelSpec(arch="tiny_cnn", labels=labels, input_size=(SIZE, SIZE), crop_pct=0.875,
                     interpolation="bilinear", mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3),
                     output_activation=activation)


def _export(spec: ModelSpec, path: Path, seed: int = 0) -> None:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
            self.head = torch.nn.Linear(16, spec.num_outputs)
            mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
            std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return self.head(self.features(x)) * 4.0

    model = Tiny().eval()
    example = torch.zeros((2, SIZE, SIZE, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.onnx.export(model, (example,), dynamo=True, external_data=False,
                                input_names=["image"], output_names=["logits"],
                                dynamic_shapes={"image": {0: batch}}, verbose=False)
    program.model.metadata_props["visionrt.spec"] = spec.to_json(indent=None)
    program.model.metadata_props["labels"] = json.dumps(list(spec.labels))
    program.save(str(path))


def quantize(src: Path, dst: Path, symmetric: bool = False) -> None:
    """Static QDQ int8: U8S8 for CPUs, or symmetric S8S8 (zero points 0) for TensorRT."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"image": rng.integers(0, 256, (4, SIZE, SIZE, 3), np.uint8)}
                                 for _ in range(4)])

        def get_next(self):  # noqa: ANN201 - ORT's interface
            return next(self.batches, None)

    activations = QuantType.QInt8 if symmetric else QuantType.QUInt8
    # TensorRT's graph keeps float biases: it cannot dequantize int32 (QuantizeBias off).
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True,
             "QuantizeBias": False} if symmetric else {}
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8, extra_options=extra)


def _io(spec: ModelSpec) -> dict:
    return {"inputs": [{"name": "image", "dtype": "uint8", "shape": ["batch", SIZE, SIZE, 3]}],
            "outputs": [{"name": "logits", "dtype": "float32",
                         "shape": ["batch", spec.num_outputs]}]}


def write_bundle(out: Path, spec: ModelSpec, *, int8_top1: float | None = 1.0) -> Path:
    """A bundle with model.fp32.onnx and (when int8_top1 is not None) model.int8.onnx."""
    from visionrt.bundle import TensorInfo

    out.mkdir(parents=True)
    _export(spec, out / "model.fp32.onnx")
    io = _io(spec)
    inputs = tuple(TensorInfo.from_dict(t) for t in io["inputs"])
    outputs = tuple(TensorInfo.from_dict(t) for t in io["outputs"])
    common = {"inputs": inputs, "outputs": outputs, "batch": {"min": 1, "max": MAX_BATCH}}
    artifacts = [describe_artifact(out / "model.fp32.onnx", format="onnx", precision="fp32",
                                   target="any", parity=_parity(1.0), **common)]
    if int8_top1 is not None:
        quantize(out / "model.fp32.onnx", out / "model.int8.onnx")
        artifacts.append(describe_artifact(
            out / "model.int8.onnx", format="onnx", precision="int8", target="cpu",
            quantization={"scheme": "U8S8", "method": "minmax"}, parity=_parity(int8_top1),
            **common))
    write_manifest(out, spec, artifacts, calibration={"method": "minmax", "samples": 16},
                   source={"kind": "test"})
    return out


def _parity(top1: float) -> dict:
    return {"reference": "torch", "samples": 64, "max_abs_error": 0.01, "top1_agreement": top1,
            "backend": "onnxruntime"}


def random_images(n: int, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> list[np.ndarray]:
    """``n`` random uint8 RGB images of ``size``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


class FakeBackend:
    """A numpy 'model' behind the Backend protocol: logits = per-channel means of the image, so
    every row depends on its own pixels only. Records batch sizes; can block or fail on demand."""

    name = "fake"

    def __init__(self, max_batch: int = 8, buckets: tuple[int, ...] | None = None,
                 num_outputs: int = 3) -> None:
        import threading

        from visionrt.bundle import TensorInfo

        self.inputs = (TensorInfo("image", "uint8", ("batch", SIZE, SIZE, 3)),)
        self.outputs = (TensorInfo("logits", "float32", ("batch", num_outputs)),)
        self.max_batch = max_batch
        self.batch_buckets = buckets
        self.calls: list[int] = []
        self.rows_seen = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.closed = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        from visionrt.runtime.base import check_batch

        check_batch(batch, self.inputs[0], self.max_batch)
        self.gate.wait(10)
        self.calls.append(batch.shape[0])
        self.rows_seen += batch.shape[0]
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated backend crash")
        means = batch.reshape(batch.shape[0], -1, 3).mean(axis=1) / 32.0
        return means[:, : self.outputs[0].shape[1]].astype(np.float32)

    def info(self):
        from visionrt.runtime.base import BackendInfo

        return BackendInfo("fake", "cpu", "numpy", "fp32", "fp32", "fake", self.max_batch)

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
