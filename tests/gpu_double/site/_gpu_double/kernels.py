"""Real-GPU execution for the TensorRT double: the probe network as a CUDA kernel (cupy).

Used when the double TensorRT meets the real cuda-bindings (a GPU machine without TensorRT). The
kernel reads and writes the raw device pointers visionrt bound and runs on the caller's stream, so
copies, stream order and CUDA-graph capture/replay are exercised for real. It allocates nothing
(allocations are not allowed while a stream is captured). Only the probe network runs here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from _gpu_double.probe import PROBE_KEY, PROBE_NAME

_SOURCE = r"""
extern "C" __global__ void channel_means(const unsigned char* x, float* y, int pixels,
                                         int classes) {
    int i = blockIdx.x, c = threadIdx.x;
    if (c >= classes) return;
    const unsigned char* image = x + (size_t)i * pixels * 3;
    float sum = 0.0f;
    for (int p = 0; p < pixels; ++p) sum += image[p * 3 + c % 3];
    y[(size_t)i * classes + c] = sum / pixels / 255.0f * (c + 1);
}
"""
_kernel: Any = None


def _compiled() -> Any:
    global _kernel
    if _kernel is None:
        import cupy

        _kernel = cupy.RawKernel(_SOURCE, "channel_means")
        _kernel.compile()  # before any capture: compiling loads a module
    return _kernel


def _check_probe(engine: Any) -> None:
    if getattr(engine, "_is_probe", None) is None:
        import onnx

        props = {p.key: p.value for p in onnx.load_from_string(engine.onnx_bytes).metadata_props}
        engine._is_probe = props.get(PROBE_KEY) == PROBE_NAME
    if not engine._is_probe:
        raise NotImplementedError("on real CUDA the TensorRT double runs only the probe network "
                                  "(_gpu_double.probe); build the engine from probe.onnx_bytes()")


def launch(engine: Any, stream_handle: int, inputs: dict, outputs: dict, addresses: dict,
           dtypes: dict) -> None:
    import cupy

    _check_probe(engine)
    (name, shape), = inputs.items()
    (out_name, out_shape), = outputs.items()
    if dtypes[name] != np.uint8 or dtypes[out_name] != np.float32 or len(shape) != 4:
        raise NotImplementedError("the probe kernel takes uint8 NHWC and writes float32")
    n, height, width, _ = shape
    classes = int(out_shape[1])
    kernel = _compiled()
    with cupy.cuda.ExternalStream(stream_handle):
        kernel((int(n),), (classes,), (np.uint64(addresses[name]),
                                       np.uint64(addresses[out_name]),
                                       np.int32(height * width), np.int32(classes)))
