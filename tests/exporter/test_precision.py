"""fp16 conversion and int8 QDQ quantization (U8S8 for CPUs, S8S8 for TensorRT, one calibration)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from visionrt.exporter import precision  # noqa: E402


def _initializers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _artifact(result, file):
    return next(a for a in result.artifacts if a.file == file)


def test_fp16_graph_keeps_io_and_preprocessing_in_fp32(tiny_bundle):
    path = tiny_bundle.bundle_dir / "model.fp16.onnx"
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = [a for n, a in _initializers(path).items() if n.endswith("weight")]
    assert weights and all(a.dtype == np.float16 for a in weights)
    constants = _initializers(path)
    assert constants["mean255"].dtype == np.float32  # preprocessing constants stay fp32
    pre = {n.name: n for n in model.graph.node if n.name in
           precision.preprocess_nodes(onnx.load(str(tiny_bundle.bundle_dir / "model.fp32.onnx")))}
    cast = next(n for n in pre.values() if n.op_type == "Cast")
    assert onnx.helper.get_attribute_value(cast.attribute[0]) == onnx.TensorProto.FLOAT


def test_int8_artifacts_schemes(tiny_bundle):
    cpu = _artifact(tiny_bundle, "model.int8.onnx")
    trt = _artifact(tiny_bundle, "model.int8.trt.onnx")
    assert (cpu.target, cpu.quantization["scheme"]) == ("cpu", "U8S8")
    assert (trt.target, trt.quantization["scheme"]) == ("tensorrt", "S8S8")
    for artifact in (cpu, trt):
        ops = precision.count_ops(tiny_bundle.bundle_dir / artifact.file,
                                  ["QuantizeLinear", "DequantizeLinear", "Conv"])
        assert ops["QuantizeLinear"] >= ops["Conv"] > 0
        assert artifact.quantization["per_channel"] is True
        assert artifact.quantization["calibration_method"] == "percentile"


def test_s8s8_is_symmetric_and_u8s8_has_uint8_activations(tiny_bundle):
    trt_zero_points = [a for n, a in _initializers(
        tiny_bundle.bundle_dir / "model.int8.trt.onnx").items() if n.endswith("zero_point")]
    assert trt_zero_points and all(z.dtype == np.int8 and not z.any() for z in trt_zero_points)
    path = tiny_bundle.bundle_dir / "model.int8.onnx"
    cpu = _initializers(path)
    activation_zps = [cpu[n.input[2]] for n in onnx.load(str(path)).graph.node
                      if n.op_type == "QuantizeLinear"]  # weights are stored quantized (DQ only)
    assert activation_zps and all(z.dtype == np.uint8 for z in activation_zps)


def test_preprocessing_and_head_stay_float(tiny_bundle):
    model = onnx.load(str(tiny_bundle.bundle_dir / "model.int8.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers["logits"].op_type == "Gemm"  # no QDQ on the logits
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert producers[first_q.input[0]].op_type == "Mul"  # normalised float input, then Q


def test_one_calibration_serves_both_schemes(tmp_path, tiny_bundle, tiny_data, monkeypatch):
    calls = []
    original = precision.CalibrationReader.get_next

    def counting(self):
        item = original(self)
        calls.append(item is not None)
        return item

    monkeypatch.setattr(precision.CalibrationReader, "get_next", counting)
    pixels = tiny_data[0][:12]
    graphs = precision.quantize_int8(
        tiny_bundle.bundle_dir / "model.fp32.onnx",
        {"U8S8": tmp_path / "a.onnx", "S8S8": tmp_path / "b.onnx"}, pixels,
        precision.Int8Recipe(method="minmax", batch=4))
    assert [g.scheme for g in graphs] == ["U8S8", "S8S8"]
    assert sum(calls) == 3  # 12 images / batch 4, read once for both graphs


def test_unknown_scheme_is_refused(tmp_path, tiny_bundle, tiny_data):
    with pytest.raises(precision.QuantizationError, match="unknown int8 schemes"):
        precision.quantize_int8(tiny_bundle.bundle_dir / "model.fp32.onnx",
                                {"U4": tmp_path / "x.onnx"}, tiny_data[0][:2],
                                precision.Int8Recipe(batch=2))


def test_metadata_survives_conversion(tiny_bundle):
    from visionrt.exporter.onnx import read_metadata

    for name in ("model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"):
        meta = read_metadata(tiny_bundle.bundle_dir / name)
        assert "visionrt.spec" in meta and "labels" in meta, name


def test_the_stem_stays_float_only_when_it_is_a_small_part_of_the_network():
    """A stem chain of 2 convs stays float among 6 convs, not among 2 (then it is the network)."""
    from onnx import TensorProto, helper

    def graph(convs):
        nodes, x = [], "x"
        for i in range(convs):
            nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                      helper.make_node("Clip", [f"c{i}"], [f"a{i}"], name=f"clip{i}")]
            x = f"a{i}"
        nodes.append(helper.make_node("Flatten", [x], ["y"], name="flat"))
        weights = [helper.make_tensor(f"w{i}", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
                   for i in range(convs)]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "y")]
        return helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], weights))

    big = graph(6)  # an Identity cuts the run of convs after the stem (conv0 .. clip1)
    big.graph.node.insert(4, onnx.helper.make_node("Identity", ["a1"], ["a1b"], name="cut"))
    big.graph.node[5].input[0] = "a1b"
    _, stem = precision.default_float_nodes(big, True)
    assert stem == ["conv0", "clip0", "conv1", "clip1"]
    assert precision.default_float_nodes(big, False)[1] == []
    small = graph(2)
    assert precision.default_float_nodes(small, True)[1] == []
