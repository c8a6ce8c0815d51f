"""ONNX export: the I/O contract, metadata, dynamic batch and in-graph preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from visionrt.errors import ConfigError  # noqa: E402
from visionrt.exporter.onnx import (  # noqa: E402
    ExportError,
    export_onnx,
    graph_spec,
    io_infos,
    read_metadata,
)
from visionrt.images import normalize  # noqa: E402
from visionrt.spec import ModelSpec  # noqa: E402


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_fp32_graph_contract(tiny_bundle, tiny_spec):
    path = tiny_bundle.bundle_dir / "model.fp32.onnx"
    inputs, outputs = io_infos(path)
    assert [(t.name, t.dtype, t.shape) for t in inputs] == [("image", "uint8", ("batch", 32, 32, 3))]
    assert [(t.name, t.dtype, t.shape) for t in outputs] == [("logits", "float32", ("batch", 3))]
    meta = read_metadata(path)
    spec = ModelSpec.from_json(meta["visionrt.spec"])
    assert spec.labels == tiny_spec.labels and spec.input_dtype == "uint8"
    assert json.loads(meta["labels"]) == list(tiny_spec.labels)
    assert not list(tiny_bundle.bundle_dir.glob("*.data")), "single-file ONNX expected"


def test_graph_preprocessing_equals_host_normalisation(tiny_bundle, trained_tiny, tiny_spec,
                                                       tiny_data):
    pixels = tiny_data[0][:5]
    got = _run(tiny_bundle.bundle_dir / "model.fp32.onnx", pixels)
    with torch.no_grad():
        want = trained_tiny(torch.from_numpy(normalize(pixels, tiny_spec))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_dynamic_batch(tiny_bundle, tiny_data, batch):
    path = tiny_bundle.bundle_dir / "model.fp32.onnx"
    pixels = tiny_data[0][:batch]
    together = _run(path, pixels)
    assert together.shape == (batch, 3)
    np.testing.assert_allclose(together[:1], _run(path, pixels[:1]), atol=1e-5)


def test_host_preprocessing_graph(tmp_path, trained_tiny, tiny_spec, tiny_data):
    spec = graph_spec(tiny_spec, "host")
    path = export_onnx(trained_tiny, spec, tmp_path / "m.onnx", max_batch=4)
    (inp,), _ = io_infos(path)
    assert (inp.dtype, inp.shape) == ("float32", ("batch", 3, 32, 32))
    x = normalize(tiny_data[0][:2], tiny_spec)
    with torch.no_grad():
        want = trained_tiny(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), want, atol=1e-4)


def test_training_mode_model_is_exported_in_eval_mode(tmp_path, tiny_spec, tiny_data,
                                                      tinynet_class):
    model = tinynet_class(3).train()  # BN in train mode would use batch statistics
    path = export_onnx(model, graph_spec(tiny_spec, "graph"), tmp_path / "m.onnx", max_batch=4)
    assert not model.training
    x = tiny_data[0][:1]
    with torch.no_grad():
        want = model(torch.from_numpy(normalize(x, tiny_spec))).numpy()
    np.testing.assert_allclose(_run(path, x), want, atol=1e-4)


def test_multi_output_model_is_refused(tmp_path, tiny_spec):
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return y, y * 2

    with pytest.raises(ExportError, match="does not match the contract"):
        export_onnx(TwoHeads(), graph_spec(tiny_spec, "graph"), tmp_path / "m.onnx", max_batch=2)
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_preprocess_mode(tiny_spec):
    with pytest.raises(ConfigError, match="preprocess"):
        graph_spec(tiny_spec, "gpu")


def test_adaptive_pooling_exports_as_one_reduce_mean(tmp_path, tiny_spec, tiny_data):
    """AdaptiveAvgPool2d(1) would export as ReduceMean + a Range/Gather chain (OpenVINO
    mis-executes it once quantized); the exporter swaps in an equivalent mean and restores it."""
    import onnx

    pool = torch.nn.AdaptiveAvgPool2d(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pool, torch.nn.Flatten(1),
                                torch.nn.Linear(4, 3)).eval()
    path = export_onnx(model, graph_spec(tiny_spec, "graph"), tmp_path / "m.onnx", max_batch=4)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Gather" not in ops and "Range" not in ops and ops.count("ReduceMean") == 1
    assert model[1] is pool  # the caller's model is left as it was
    x = tiny_data[0][:3]
    with torch.no_grad():
        want = model(torch.from_numpy(normalize(x, tiny_spec))).numpy()
    np.testing.assert_allclose(_run(path, x), want, atol=1e-5)
