"""The probe network: per-image channel means, as an ONNX graph and as numpy.

``logits[n, c] = mean over pixels of image[n, :, :, c % 3] / 255 * (c + 1)``, uint8 NHWC in,
float32 out, dynamic batch: small enough to hand-write as a CUDA kernel (:mod:`kernels`), so the
same engine runs on the CUDA double (through ONNX Runtime) and on a real GPU (as that kernel).
"""

from __future__ import annotations

import numpy as np

PROBE_KEY = "gpu_double.kernel"
PROBE_NAME = "channel_means"


def reference(batch: np.ndarray, classes: int) -> np.ndarray:
    means = batch.astype(np.float64).mean(axis=(1, 2)) / 255.0
    columns = [means[:, c % 3] * (c + 1) for c in range(classes)]
    return np.stack(columns, axis=1).astype(np.float32)


def onnx_bytes(size: int, classes: int, *, metadata: dict[str, str] | None = None) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])
    constants = [numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
                 numpy_helper.from_array(np.array([c % 3 for c in range(classes)], np.int64),
                                         "channel"),
                 numpy_helper.from_array(np.array([(c + 1) / 255.0 for c in range(classes)],
                                                  np.float32), "scale")]
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x", "axes"], ["means"], keepdims=0),
             helper.make_node("Gather", ["means", "channel"], ["picked"], axis=1),
             helper.make_node("Mul", ["picked", "scale"], ["logits"])]
    graph = helper.make_graph(nodes, "probe", [image], [logits], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {PROBE_KEY: PROBE_NAME, **(metadata or {})})
    return model.SerializeToString()
