"""What ``execute_async_v3`` puts on the stream: the network run on the bound device memory.

With the CUDA double the work is a stream op that reads the inputs from fake device memory, runs
the engine's ONNX graph through ONNX Runtime and writes the outputs back. With real CUDA (a GPU
machine without TensorRT) it is a real kernel launched on the caller's stream
(:mod:`_gpu_double.kernels`), so copies, streams and CUDA graphs are the real thing.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from _gpu_double import cuda_side, trt_api
from _gpu_double.state import state
from _gpu_double.trt_api import TensorIOMode


def enqueue_work(context: Any, stream_handle: int) -> bool:
    engine = context.engine
    inputs = {n: context.get_tensor_shape(n) for n in engine._names
              if engine.get_tensor_mode(n) == TensorIOMode.INPUT}
    outputs = {n: context.get_tensor_shape(n) for n in engine._names
               if engine.get_tensor_mode(n) == TensorIOMode.OUTPUT}
    addresses = dict(context._addresses)
    dtypes = {n: np.dtype(trt_api.nptype(engine.get_tensor_dtype(n))) for n in engine._names}
    if not cuda_side.is_double():
        from _gpu_double import kernels

        kernels.launch(engine, stream_handle, inputs, outputs, addresses, dtypes)
        return True
    for name, shape in {**inputs, **outputs}.items():
        nbytes = int(np.prod(shape)) * dtypes[name].itemsize
        cuda_side.check_device_range(addresses[name], nbytes, f"execute_async_v3 tensor {name}")

    def run() -> None:
        feeds = {n: cuda_side.read_device(addresses[n], dtypes[n], tuple(s), f"input {n}")
                 for n, s in inputs.items()}
        results = engine.run(feeds)
        for name, shape in outputs.items():
            value = np.ascontiguousarray(results[name], dtypes[name])
            if value.shape != tuple(shape):
                raise state().violate(f"output {name}: the network produced {value.shape}, the "
                                      f"context announced {tuple(shape)}")
            cuda_side.write_device(addresses[name], value, f"output {name}")

    if cuda_side.capturing(stream_handle):
        # recorded into a graph: every replay runs these frozen shapes and addresses
        cuda_side.enqueue(stream_handle, run, "execute_async_v3")
        return True
    owner = threading.get_ident()

    def run_and_release() -> None:
        try:
            run()
        finally:
            if context._pending_owner == owner:
                context._pending_owner = None

    context._pending_owner = owner
    cuda_side.enqueue(stream_handle, run_and_release, "execute_async_v3")
    state().count("executions_enqueued")
    return True
