"""The CUDA calls the native TensorRT backend needs, through cuda-python or (fallback) pycuda.

Everything the TensorRT backend does with CUDA goes through :class:`CudaApi`: device probe, device
and pinned host buffers, a non-blocking stream, async copies, synchronisation and CUDA graphs.
``cuda.bindings.runtime`` (cuda-python, NVIDIA's own choice since TensorRT 10.14) is preferred;
pycuda (primary context, so it shares memory with TensorRT) is accepted when it is what is installed.

The probe functions never raise and never create a TensorRT object: without a driver/GPU,
``cudaGetDeviceCount`` returns an error code, and TensorRT would segfault on deserialize.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionrt import _optional
from visionrt.errors import BackendUnavailableError, InferenceError, ResourceExhaustedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int


def _cudart() -> Any | None:
    if not _optional.available("cuda.bindings"):
        return None
    try:
        from cuda.bindings import runtime
    except Exception:  # noqa: BLE001 - a broken install counts as "no CUDA"
        return None
    return runtime


def device_count() -> int:
    """Number of CUDA devices usable here; 0 when there is no driver, GPU or CUDA package."""
    cudart = _cudart()
    if cudart is not None:
        try:
            err, count = cudart.cudaGetDeviceCount()
            return int(count) if err == cudart.cudaError_t.cudaSuccess else 0
        except Exception:  # noqa: BLE001 - missing libcudart etc.
            return 0
    if _optional.available("pycuda"):
        try:
            import pycuda.driver as driver

            driver.init()
            return int(driver.Device.count())
        except Exception:  # noqa: BLE001
            return 0
    return 0


def unavailable_reason(index: int = 0) -> str | None:
    """``None`` when CUDA device ``index`` is usable, else a sentence saying what is missing."""
    if _cudart() is None and not _optional.available("pycuda"):
        return "neither cuda-python nor pycuda is installed (pip install 'visionrt[gpu]')"
    count = device_count()
    if count == 0:
        return "no CUDA device found (no NVIDIA GPU or driver visible to this process)"
    if index >= count:
        return f"device cuda:{index} does not exist ({count} CUDA device(s) found)"
    return None


def device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index``.

    Raises:
        BackendUnavailableError: no such device.
    """
    reason = unavailable_reason(index)
    if reason is not None:
        raise BackendUnavailableError(reason, source=f"cuda:{index}")
    cudart = _cudart()
    if cudart is not None:
        props = _check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
        return DeviceInfo(index, name.rstrip("\x00"), (props.major, props.minor),
                          int(props.totalGlobalMem))
    import pycuda.driver as driver

    device = driver.Device(index)
    return DeviceInfo(index, device.name(), device.compute_capability(), device.total_memory())


def _check(cudart: Any, result: Any, what: str) -> Any:
    """Unwrap a cuda-bindings ``(err, *values)`` tuple, raising on any error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        message = f"{what} failed: {getattr(err, 'name', err)} ({text.decode(errors='replace')})"
        if err == cudart.cudaError_t.cudaErrorMemoryAllocation:
            raise ResourceExhaustedError(message, source=what, hint="use a smaller max_batch")
        raise InferenceError(message, source=what)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass
class HostBuffer:
    """Page-locked host memory with a numpy byte view (``array``)."""

    ptr: int
    nbytes: int
    array: np.ndarray
    handle: Any = None

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.array[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    handle: Any = None


class CudaApi:
    """cuda-python (``cuda.bindings.runtime``) implementation; see :class:`PyCudaApi`."""

    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _cudart()
        if self.rt is None:
            raise BackendUnavailableError("cuda-python is not installed",
                                          hint="pip install 'visionrt[gpu]'")

    def activate(self, index: int) -> None:
        """Make device ``index`` current for the calling thread (runtime API: per thread)."""
        _check(self.rt, self.rt.cudaSetDevice(index), "cudaSetDevice")

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(int(_check(self.rt, self.rt.cudaMalloc(nbytes), "cudaMalloc")),
                            nbytes)

    def alloc_host(self, nbytes: int) -> HostBuffer:
        ptr = int(_check(self.rt, self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return HostBuffer(ptr, nbytes, array)

    def free_device(self, buffer: DeviceBuffer) -> None:
        _check(self.rt, self.rt.cudaFree(buffer.ptr), "cudaFree")

    def free_host(self, buffer: HostBuffer) -> None:
        _check(self.rt, self.rt.cudaFreeHost(buffer.ptr), "cudaFreeHost")

    def create_stream(self) -> Any:
        flags = self.rt.cudaStreamNonBlocking  # the legacy default stream adds device syncs
        return _check(self.rt, self.rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        from cuda.bindings.utils import get_cuda_native_handle

        return int(get_cuda_native_handle(stream))

    def destroy_stream(self, stream: Any) -> None:
        _check(self.rt, self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.rt, self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream),
               "cudaMemcpyAsync(HtoD)")

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.rt, self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream),
               "cudaMemcpyAsync(DtoH)")

    def synchronize(self, stream: Any) -> None:
        _check(self.rt, self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def capture_graph(self, stream: Any, enqueue: Any) -> Any | None:
        """Capture what ``enqueue()`` puts on ``stream`` into an executable CUDA graph.

        Returns None (and leaves the stream usable) when ``enqueue`` returns False, i.e. the
        engine cannot be captured; the caller then runs without a graph.
        """
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(self.rt, self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        ok = False
        try:
            ok = bool(enqueue())
        finally:
            graph = _check(self.rt, self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        if not ok or graph is None:
            if graph is not None:
                self.rt.cudaGraphDestroy(graph)
            return None
        executable = _check(self.rt, self.rt.cudaGraphInstantiate(graph, 0),
                            "cudaGraphInstantiate")
        self.rt.cudaGraphDestroy(graph)
        return executable

    def launch_graph(self, graph: Any, stream: Any) -> None:
        _check(self.rt, self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        self.rt.cudaGraphExecDestroy(graph)


class PyCudaApi(CudaApi):
    """pycuda implementation (primary context, shared with TensorRT); no CUDA graphs."""

    name = "pycuda"
    _local = threading.local()

    def __init__(self) -> None:
        self.driver = _optional.require("pycuda.driver", extra="tensorrt")
        self.driver.init()

    def activate(self, index: int) -> None:
        # pycuda contexts are per thread: push the device's primary context once per thread.
        if getattr(self._local, "index", None) != index:
            context = self.driver.Device(index).retain_primary_context()
            context.push()
            self._local.index, self._local.context = index, context

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        allocation = self.driver.mem_alloc(nbytes)
        return DeviceBuffer(int(allocation), nbytes, handle=allocation)

    def alloc_host(self, nbytes: int) -> HostBuffer:
        array = self.driver.pagelocked_empty(nbytes, np.uint8)
        return HostBuffer(array.ctypes.data, nbytes, array, handle=array)

    def free_device(self, buffer: DeviceBuffer) -> None:
        buffer.handle.free()

    def free_host(self, buffer: HostBuffer) -> None:
        allocation = getattr(buffer.handle, "base", None)
        if allocation is not None and hasattr(allocation, "free"):
            allocation.free()

    def create_stream(self) -> Any:
        return self.driver.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream: Any) -> None:
        return None  # freed with the object

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        self.driver.memcpy_htod_async(dst.ptr, src.array[:nbytes], stream)

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        self.driver.memcpy_dtoh_async(dst.array[:nbytes], src.ptr, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def capture_graph(self, stream: Any, enqueue: Any) -> Any | None:
        return None  # CUDA graphs need cuda-python here

    def launch_graph(self, graph: Any, stream: Any) -> None:  # pragma: no cover - never captured
        raise InferenceError("CUDA graphs need cuda-python")

    def destroy_graph(self, graph: Any) -> None:  # pragma: no cover
        return None


def get_api() -> CudaApi:
    """cuda-python when installed, else pycuda.

    Raises:
        BackendUnavailableError: neither is installed.
    """
    if _cudart() is not None:
        return CudaApi()
    if _optional.available("pycuda"):
        return PyCudaApi()
    raise BackendUnavailableError("the TensorRT backend needs cuda-python or pycuda",
                                  hint="pip install 'visionrt[gpu]'")
