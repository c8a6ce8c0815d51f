"""The TensorRT/CUDA test double itself: it refuses what TensorRT and CUDA refuse, computes what the
engine's graph computes, and never leaks into a test that did not ask for it."""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
import pytest

from visionrt import _optional

SIZE, CLASSES = 8, 5


def test_nothing_leaks_after_the_double() -> None:
    import gpu_double

    with gpu_double.activated():
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime

        assert runtime.IS_GPU_DOUBLE and _optional.available("tensorrt")
    assert not _optional.available("tensorrt") and "tensorrt" not in sys.modules
    assert not any(name.startswith("_gpu_double") for name in sys.modules)
    from cuda.bindings import runtime

    assert not getattr(runtime, "IS_GPU_DOUBLE", False)  # the real cuda-python is back


@pytest.fixture
def built(trt_double):
    """(tensorrt, logger, serialized plan of the probe network, batch 1..4)."""
    import gpu_double
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(network, logger).parse(gpu_double.probe().onnx_bytes(SIZE, CLASSES))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, SIZE, SIZE, 3), (2, SIZE, SIZE, 3), (4, SIZE, SIZE, 3))
    assert config.add_optimization_profile(profile) == 0
    return trt, logger, bytes(builder.build_serialized_network(network, config))


class _Gpu:
    """Device/pinned buffers and a stream through the double's cuda.bindings.runtime."""

    def __init__(self) -> None:
        from cuda.bindings import runtime as rt
        from cuda.bindings.utils import get_cuda_native_handle

        self.rt = rt
        self.stream = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)[1]
        self.handle = get_cuda_native_handle(self.stream)
        self.image, self.logits = rt.cudaMalloc(4 * SIZE * SIZE * 3)[1], rt.cudaMalloc(80)[1]
        self.host_in = rt.cudaMallocHost(4 * SIZE * SIZE * 3)[1]
        self.host_out = rt.cudaMallocHost(80)[1]

    def put(self, batch: np.ndarray) -> None:
        ctypes.memmove(self.host_in, batch.ctypes.data, batch.nbytes)
        self.rt.cudaMemcpyAsync(self.image, self.host_in, batch.nbytes,
                                self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)

    def get(self, n: int) -> np.ndarray:
        self.rt.cudaMemcpyAsync(self.host_out, self.logits, n * CLASSES * 4,
                                self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
        return np.ctypeslib.as_array((ctypes.c_float * (n * CLASSES)).from_address(
            self.host_out)).reshape(n, CLASSES)


def _context(built):
    trt, logger, plan = built
    return trt.Runtime(logger).deserialize_cuda_engine(plan).create_execution_context()


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_an_engine_computes_its_graph_only_after_the_stream_is_synchronized(built) -> None:
    import gpu_double

    gpu, context = _Gpu(), _context(built)
    assert context.set_input_shape("image", (3, SIZE, SIZE, 3))
    assert context.set_tensor_address("image", gpu.image)
    assert context.set_tensor_address("logits", gpu.logits)
    batch = _batch(3)
    gpu.put(batch)
    assert context.execute_async_v3(gpu.handle)
    before = gpu.get(3).copy()
    gpu.rt.cudaStreamSynchronize(gpu.stream)
    expected = gpu_double.probe().reference(batch, CLASSES)
    assert not np.allclose(before, expected)  # stale until synchronized, as on a GPU
    np.testing.assert_allclose(gpu.get(3), expected, rtol=1e-6)


def test_execution_contracts(built, trt_double) -> None:
    gpu, context = _Gpu(), _context(built)
    assert not context.execute_async_v3(gpu.handle)  # no input shape yet
    assert not context.set_input_shape("image", (5, SIZE, SIZE, 3))  # outside the profile 1..4
    assert context.set_input_shape("image", (2, SIZE, SIZE, 3))
    assert not context.execute_async_v3(gpu.handle)  # addresses not set
    assert not context.set_tensor_address("image", 0)
    context.set_tensor_address("image", gpu.image)
    context.set_tensor_address("logits", gpu.host_out)  # a host pointer is no device memory
    with pytest.raises(trt_double.ContractViolation, match="not inside one device allocation"):
        context.execute_async_v3(gpu.handle)
    with pytest.raises(TypeError):
        context.execute_async_v3(gpu.stream)  # TensorRT takes the int handle
    trt_double.state().violations.clear()


def test_a_context_is_not_shared_by_two_threads(built, trt_double) -> None:
    gpu, context = _Gpu(), _context(built)
    context.set_input_shape("image", (1, SIZE, SIZE, 3))
    context.set_tensor_address("image", gpu.image)
    context.set_tensor_address("logits", gpu.logits)
    assert context.execute_async_v3(gpu.handle)  # queued, not synchronized
    errors: list[BaseException] = []

    def other() -> None:
        try:
            context.set_input_shape("image", (2, SIZE, SIZE, 3))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert isinstance(errors[0], trt_double.ContractViolation)
    trt_double.state().violations.clear()


def test_plans_load_only_on_the_same_version_and_gpu(built, trt_double) -> None:
    trt, logger, plan = built
    assert trt.Runtime(logger).deserialize_cuda_engine(b"not a plan") is None
    for settings, message in (
            ({"trt_version": "10.14.1.48"}, "expecting library version 10.14.1.48 got 10.13.0.35"),
            ({"trt_version": "10.13.0.35", "devices": [{"cc": [9, 0]}]},
             "expecting compute 9.0 got compute 8.9")):
        trt_double.configure(**settings)
        assert trt.Runtime(logger).deserialize_cuda_engine(plan) is None
        assert any(message in line for _, line in trt_double.state().trt_log)


def test_builder_contracts(trt_double) -> None:
    import gpu_double
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    onnx = gpu_double.probe().onnx_bytes(SIZE, CLASSES)
    typed = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    trt.OnnxParser(typed, logger).parse(onnx)
    config = builder.create_builder_config()
    assert builder.build_serialized_network(typed, config) is None  # dynamic batch, no profile
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (4, SIZE, SIZE, 3), (2, SIZE, SIZE, 3), (8, SIZE, SIZE, 3))
    assert config.add_optimization_profile(profile) == -1  # min > opt
    profile.set_shape("image", (1, SIZE, SIZE, 3), (2, SIZE, SIZE, 3), (8, SIZE, SIZE, 3))
    assert config.add_optimization_profile(profile) == 0
    config.set_flag(trt.BuilderFlag.FP16)  # precision flags have no place in a typed network
    assert builder.build_serialized_network(typed, config) is None
    config.clear_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(typed, config) is not None
    weak = builder.create_network(0)  # weakly typed on TensorRT 10
    trt.OnnxParser(weak, logger).parse(onnx)
    with pytest.raises(trt_double.ContractViolation, match="weakly typed"):
        builder.build_serialized_network(weak, config)
    trt_double.configure(driver="no-device")
    with pytest.raises(trt_double.ContractViolation, match="without a CUDA device"):
        trt.Builder(logger)
    trt_double.state().violations.clear()


def test_a_captured_graph_replays_with_the_frozen_addresses(built) -> None:
    import gpu_double

    gpu, context = _Gpu(), _context(built)
    rt = gpu.rt
    context.set_input_shape("image", (2, SIZE, SIZE, 3))
    context.set_tensor_address("image", gpu.image)
    context.set_tensor_address("logits", gpu.logits)
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    rt.cudaStreamBeginCapture(gpu.stream, mode)
    assert rt.cudaMalloc(16)[0] == rt.cudaError_t.cudaErrorStreamCaptureUnsupported
    assert rt.cudaStreamEndCapture(gpu.stream)[0] == rt.cudaError_t.cudaErrorStreamCaptureInvalidated
    rt.cudaStreamBeginCapture(gpu.stream, mode)
    context.execute_async_v3(gpu.handle)
    err, graph = rt.cudaStreamEndCapture(gpu.stream)
    executable = rt.cudaGraphInstantiate(graph, 0)[1]
    for seed in (1, 2):
        batch = _batch(2, seed)
        gpu.put(batch)
        rt.cudaGraphLaunch(executable, gpu.stream)
        out = gpu.get(2)
        rt.cudaStreamSynchronize(gpu.stream)
        np.testing.assert_allclose(out, gpu_double.probe().reference(batch, CLASSES), rtol=1e-6)
