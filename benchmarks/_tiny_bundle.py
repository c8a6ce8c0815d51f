"""The tiny classifier the soak and the reliability tests serve: no torch, built in milliseconds.

Its ONNX graph maps an image's mean colour to logits, so every answer can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 32
LABELS = ("red", "green", "blue", "gray")


def build_tiny_bundle(out: Path, *, size: int = SIZE, max_batch: int = 16,
                      labels: tuple[str, ...] = LABELS) -> Path:
    """A bundle whose model maps an image's mean colour to logits (no torch needed).

    Graph: image uint8 [batch, size, size, 3] -> Cast -> ReduceMean(H, W) -> MatMul W -> Add b ->
    logits float32 [batch, len(labels)]. Each row depends only on its own image, so results can
    be checked item by item. The ModelSpec is in the bundle manifest and the ONNX metadata.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from visionrt.bundle import TensorInfo, describe_artifact, staging_dir, write_manifest
    from visionrt.spec import ModelSpec

    spec = ModelSpec(arch="mean_colour", labels=labels, input_size=(size, size),
                     resize_mode="squash", interpolation="bilinear")
    rng = np.random.default_rng(0)
    weight = np.concatenate([np.eye(3), rng.normal(0, 0.01, (3, len(labels) - 3))], axis=1)
    weight = (weight / 25.0).astype(np.float32)
    bias = np.zeros(len(labels), np.float32)
    bias[3:] = 3.0
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "weight"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "mean_colour",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels)])],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
         numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {"visionrt.spec": spec.to_json(indent=None),
                                   "labels": json.dumps(list(labels))})
    with staging_dir(out, overwrite=True) as tmp:
        path = tmp / "model.fp32.onnx"
        onnx.save(model, path)
        artifact = describe_artifact(
            path, format="onnx", precision="fp32", target="any",
            inputs=(TensorInfo("image", "uint8", ("batch", size, size, 3)),),
            outputs=(TensorInfo("logits", "float32", ("batch", len(labels))),),
            batch={"min": 1, "max": max_batch},
            parity={"reference": "numpy", "samples": 0, "max_abs_error": 0.0,
                    "top1_agreement": 1.0, "backend": "onnxruntime"})
        write_manifest(tmp, spec, [artifact], calibration=None, source={"kind": "soak"})
    return out
