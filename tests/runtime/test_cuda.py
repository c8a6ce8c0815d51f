"""The one CUDA layer (visionrt.runtime._cuda): probe, TensorRT gate, error unwrap, CudaApi.

Every state a machine can be in is reached through the CUDA double (tests/gpu_double), whatever
this machine has: one GPU, no device, no driver, a driver older than the runtime, a broken
library, a too-old cuda-python, no cuda-python at all.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from visionrt.errors import (
    BackendUnavailableError,
    InferenceError,
    MissingDependencyError,
    ResourceExhaustedError,
)
from visionrt.runtime import _cuda


def test_probe_reports_the_double_gpu(trt_double) -> None:
    status = _cuda.probe()
    assert status.reason is None and len(status.devices) == 1
    device = _cuda.device_info(0)
    assert device.name == "NVIDIA Double L4" and device.capability == "8.9"
    assert _cuda.unavailable_reason(1) == "device cuda:1 does not exist (1 CUDA device(s) found)"


@pytest.mark.parametrize("driver, text, error", [
    ("no-driver", "no usable NVIDIA driver", "cudaErrorInsufficientDriver"),
    ("old-driver", "older than the CUDA runtime", "cudaErrorInsufficientDriver"),
    ("no-device", "no CUDA device found (cudaErrorNoDevice", "cudaErrorNoDevice"),
    ("broken", "the CUDA libraries could not be loaded (RuntimeError", None),
])
def test_probe_says_why_there_is_no_gpu(trt_double, driver, text, error) -> None:
    trt_double.configure(driver=driver)
    status = _cuda.probe()
    assert status.devices == () and text in status.reason and status.error == error
    if driver in ("no-driver", "old-driver"):
        # a driver problem is not reported as a missing GPU
        assert "no CUDA device found" not in status.reason
    with pytest.raises(BackendUnavailableError, match=text.split("(")[0]):
        _cuda.device_info(0)
    assert _cuda.device_count() == 0


def test_probe_with_a_driver_and_zero_devices(trt_double) -> None:
    trt_double.configure(devices=[])
    assert _cuda.probe().reason == ("no CUDA device found (no NVIDIA GPU is visible to this "
                                    "process)")
    with pytest.raises(BackendUnavailableError, match="TensorRT needs an NVIDIA GPU, but no CUDA "
                       "device found"):
        _cuda.require_tensorrt(0)
    assert not trt_double.state().counters.get("builders")


def test_probe_refuses_cuda_python_older_than_12_9_1(trt_double) -> None:
    # get_cuda_native_handle (the stream handle TensorRT takes) first shipped in 12.9.1
    for name in [n for n in sys.modules if n.startswith("cuda.bindings")]:
        del sys.modules[name]
    trt_double.configure(bindings="12.8.0")
    reason = _cuda.unavailable_reason(0)
    assert "12.8.0 is older than 12.9.1" in reason and "cuda-python>=12.9.1" in reason
    with pytest.raises(BackendUnavailableError, match="older than 12.9.1"):
        _cuda.get_api()


def test_probe_without_cuda_python(monkeypatch) -> None:
    # pycuda alone is no CUDA layer for visionrt (it used to push contexts it never popped)
    monkeypatch.setattr(_cuda._optional, "available", lambda name: name == "pycuda")
    assert _cuda.probe().reason == "cuda-python is not installed (pip install 'visionrt[gpu]')"
    with pytest.raises(BackendUnavailableError, match="cuda-python is not installed"):
        _cuda.get_api()


@pytest.mark.parametrize("driver", ["no-driver", "no-device"])
def test_tensorrt_is_never_touched_without_a_gpu(trt_double, driver) -> None:
    trt_double.configure(driver=driver)
    with pytest.raises(BackendUnavailableError, match="TensorRT needs an NVIDIA GPU, but"):
        _cuda.require_tensorrt(0)
    counters = trt_double.state().counters
    assert not counters.get("builders") and not counters.get("runtimes")
    assert "tensorrt" not in sys.modules  # not even imported


def test_missing_tensorrt_and_gpu_are_both_named(monkeypatch) -> None:
    monkeypatch.setattr(_cuda, "unavailable_reason", lambda index=0: "no usable NVIDIA driver")
    real_available = _cuda._optional.available
    monkeypatch.setattr(_cuda._optional, "available",
                        lambda name: False if name == "tensorrt" else real_available(name))
    assert _cuda.tensorrt_unavailable_reason(0) == (
        "TensorRT is not installed (pip install 'visionrt[tensorrt]'; the TensorRT wheels come "
        "from NVIDIA's index), and no usable NVIDIA driver")
    monkeypatch.setattr(_cuda, "unavailable_reason", lambda index=0: None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"visionrt\[tensorrt\]"):
        _cuda.require_tensorrt(0)


def test_check_unwraps_values_and_names_the_failed_call(trt_double) -> None:
    from cuda.bindings import runtime as rt

    assert _cuda.check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount") == 1
    assert _cuda.check(rt.cudaSetDevice(0), "cudaSetDevice") is None
    with pytest.raises(InferenceError, match=r"cudaSetDevice failed: cudaErrorInvalidDevice"):
        _cuda.check(rt.cudaSetDevice(3), "cudaSetDevice")
    with pytest.raises(ResourceExhaustedError, match="cudaMalloc failed: "
                       "cudaErrorMemoryAllocation .out of memory"):
        _cuda.check(rt.cudaMalloc(1 << 50), "cudaMalloc")


def test_cuda_api_round_trip_streams_and_graphs(trt_double) -> None:
    """Allocation, pinned memory, a non-blocking stream, async copies, a captured graph."""
    api = _cuda.get_api()
    api.activate(0)
    stream = api.create_stream()
    handle = api.stream_handle(stream)
    assert isinstance(handle, int) and handle
    host, device, back = api.alloc_host(64), api.alloc_device(64), api.alloc_host(64)
    data = np.arange(64, dtype=np.uint8)
    host.array[:] = data
    api.copy_to_device(device, host, 64, stream)
    api.copy_to_host(back, device, 64, stream)
    assert not np.array_equal(back.array, data)  # async: nothing moved before the sync
    api.synchronize(stream)
    np.testing.assert_array_equal(back.array, data)
    graph = api.capture_graph(stream, lambda: api.copy_to_device(device, host, 64, stream) or True)
    host.array[:] = data[::-1]  # a replay copies what the buffer holds then
    api.launch_graph(graph, stream)
    api.copy_to_host(back, device, 64, stream)
    api.synchronize(stream)
    np.testing.assert_array_equal(back.array, data[::-1])
    start, end = api.create_event(), api.create_event()
    api.record_event(start, stream)
    api.record_event(end, stream)
    assert api.elapsed_ms(start, end) >= 0.0
    api.destroy_graph(graph)
    api.destroy_stream(stream)
    for buffer in (host, back):
        api.free_host(buffer)
    api.free_device(device)
    assert trt_double.state().device_bytes_in_use() == 0


def test_a_failed_capture_leaves_the_stream_usable(trt_double) -> None:
    api = _cuda.get_api()
    stream = api.create_stream()
    assert api.capture_graph(stream, lambda: False) is None
    with pytest.raises(InferenceError, match="cudaStreamSynchronize failed: "
                       "cudaErrorStreamCaptureUnsupported"):
        # synchronizing inside a capture is not allowed: the capture is invalidated
        api.capture_graph(stream, lambda: api.synchronize(stream))
    api.synchronize(stream)
