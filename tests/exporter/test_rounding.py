"""Weight rounding for int8: weights land on ONNX Runtime's grid, bias correction removes the mean
shift of rounding, AdaRound beats round-to-nearest on a layer's output."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from visionrt.exporter import rounding  # noqa: E402
from visionrt.exporter.onnx import export_onnx  # noqa: E402


class EdgeNet(torch.nn.Module):
    """A stem conv then a depthwise conv whose channels nearly cancel (high-gain edge detectors, as
    after batch-norm folding): rounding each weight to nearest shifts the channel's mean output."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        with torch.no_grad():
            w = torch.randn(8, 1, 3, 3, generator=g) * 4
            w -= w.mean(dim=(2, 3), keepdim=True)  # sums to zero: edges only
            self.dw.weight.copy_(w)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(self.dw(torch.clamp(self.stem(x), 0, 6)), 0, 6)
        return self.head(y.mean((2, 3)))


@pytest.fixture(scope="module")
def edge_graph(tmp_path_factory, tiny_spec):
    from visionrt.exporter.onnx import graph_spec

    torch.manual_seed(0)
    spec = graph_spec(tiny_spec.with_(labels=tuple("abcd")), "host")
    path = tmp_path_factory.mktemp("edge") / "edge.onnx"
    export_onnx(EdgeNet().eval(), spec, path, max_batch=8)
    images = np.random.default_rng(0).normal(size=(12, 3, 32, 32)).astype(np.float32)
    return path, images


def _convs(path):
    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return [(n, inits[n.input[1]], inits.get(n.input[2]) if len(n.input) > 2 else None)
            for n in proto.graph.node if n.op_type == "Conv"]


def _run(path, images):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})[0]


def test_rounded_weights_sit_on_onnxruntimes_int8_grid(edge_graph, tmp_path):
    src, images = edge_graph
    dst = tmp_path / "nearest.onnx"
    record = rounding.round_weights(src, dst, images, rounding.RoundingOptions(
        mode="nearest", bias_correction=False))
    assert record["layers"] == 2
    for (_, before, _), (_, after, _) in zip(_convs(src), _convs(dst), strict=True):
        scale = rounding.grid_scale(before)
        integers = after / scale
        assert np.allclose(integers, np.round(integers), atol=1e-3)
        assert np.allclose(after, np.round(before / scale) * scale, atol=1e-6)
        assert np.allclose(rounding.grid_scale(after), scale)  # the largest weight keeps the scale


def test_quantizer_reproduces_the_chosen_integers(edge_graph, tmp_path):
    """ONNX Runtime's own per-channel quantization of a rounded graph stores exactly our
    integers: what AdaRound chose is what ships."""
    from visionrt.exporter import precision

    src, images = edge_graph
    rounded = tmp_path / "adaround.onnx"
    rounding.round_weights(src, rounded, images, rounding.RoundingOptions(iterations=40))
    out = tmp_path / "int8.onnx"
    precision.quantize_int8(rounded, {"U8S8": out}, images, precision.Int8Recipe(batch=4))
    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer
              if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4}
    expected = [np.round(w / rounding.grid_scale(w)) for _, w, _ in _convs(rounded)]
    assert len(stored) == len(expected) == 2
    for got in stored.values():
        assert any(got.shape == e.shape and np.array_equal(got, e) for e in expected)


def test_bias_correction_removes_the_mean_output_shift(edge_graph, tmp_path):
    src, images = edge_graph
    reference = _run(src, images)
    errors = {}
    for corrected in (False, True):
        dst = tmp_path / f"bc{corrected}.onnx"
        rounding.round_weights(src, dst, images, rounding.RoundingOptions(
            mode="nearest", bias_correction=corrected))
        errors[corrected] = float(np.abs((_run(dst, images) - reference).mean(axis=0)).mean())
    assert errors[True] < 0.5 * errors[False]


def test_adaround_beats_nearest_on_the_layer_output():
    """Image-like inputs (smooth, with a mean) make rounding errors add up, which AdaRound undoes;
    on white noise round-to-nearest is already optimal."""
    rng = np.random.default_rng(1)
    weight = (rng.normal(size=(8, 4, 3, 3)) * 0.3).astype(np.float32)
    coarse = torch.from_numpy(rng.normal(size=(16, 4, 3, 3)).astype(np.float32))
    x = (torch.nn.functional.interpolate(coarse, size=(10, 10), mode="bilinear") + 2).numpy()

    def forward(inputs, w):
        return torch.nn.functional.conv2d(inputs, w, padding=1)

    integers, (nearest, chosen) = rounding.adaround(
        weight, rounding.grid_scale(weight), x, forward,
        rounding.RoundingOptions(iterations=300, batch=8))
    assert chosen < 0.8 * nearest
    floor = np.floor(weight / rounding.grid_scale(weight))
    assert np.all((integers == floor) | (integers == floor + 1))  # only up or down


def test_uneven_onnx_padding_is_honoured(tmp_path):
    """TF-style 'same' padding is written as uneven ONNX pads ([0, 0, 1, 1]); the layer function
    AdaRound optimises must compute exactly the graph's output."""
    from onnx import TensorProto, helper

    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1], strides=[2, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph)
    x = np.random.default_rng(1).normal(size=(1, 1, 8, 8)).astype(np.float32)
    import onnxruntime as ort

    expected = ort.InferenceSession(proto.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = rounding._conv_function(node, proto)(torch.from_numpy(x), torch.from_numpy(w))
    assert np.allclose(got.numpy(), expected, atol=1e-5)
