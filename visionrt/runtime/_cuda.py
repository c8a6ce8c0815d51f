"""The one CUDA layer: the device probe, the TensorRT gate, and the CUDA calls of the runtime.

Everything in visionrt that asks "is there a usable GPU?" (the exporter, the runtime's backends,
``visionrt doctor``, the benchmark's environment record) asks :func:`probe`, and every CUDA call
result goes through :func:`check`. CUDA is reached through cuda-python (``cuda.bindings``,
>= 12.9.1 for ``get_cuda_native_handle``), NVIDIA's own choice since TensorRT 10.14. pycuda is not
supported: it ships only as a source package that needs the CUDA toolkit to build, and a second
CUDA layer would be a second, untested path.

The probe never raises and never creates a TensorRT object: without a driver or GPU,
``cudaGetDeviceCount`` returns an error code, and a TensorRT Runtime or Builder created then
crashes the process on first use. :func:`require_tensorrt` is the only way visionrt imports
TensorRT for building or running engines, and it probes first.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from visionrt import _optional
from visionrt.errors import BackendUnavailableError, InferenceError, ResourceExhaustedError

log = logging.getLogger(__name__)

MIN_BINDINGS = (12, 9, 1)
INSTALL_GPU = "pip install 'visionrt[gpu]'"
INSTALL_TENSORRT = "pip install 'visionrt[tensorrt]'; the TensorRT wheels come from NVIDIA's index"
# What a CUDA error at initialisation means for a user (anything else is quoted as it is).
_INIT_ERRORS = {
    "cudaErrorInsufficientDriver": "no usable NVIDIA driver: CUDA reports "
    "cudaErrorInsufficientDriver (the driver is missing, or older than the CUDA runtime "
    "cuda-python was built for); install or update the NVIDIA driver",
    "cudaErrorNoDevice": "no CUDA device found (cudaErrorNoDevice: no NVIDIA GPU is visible to "
    "this process; check CUDA_VISIBLE_DEVICES)",
}


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int

    @property
    def capability(self) -> str:
        """``"8.9"``: the form engine records use."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


@dataclass(frozen=True)
class CudaStatus:
    """What :func:`probe` found: the usable devices, or why there are none."""

    devices: tuple[DeviceInfo, ...]
    reason: str | None = None
    error: str | None = None  # the CUDA error name, when CUDA returned one


def _runtime() -> tuple[ModuleType | None, str | None]:
    """``cuda.bindings.runtime``, or None and why it cannot be used."""
    if not _optional.available("cuda.bindings"):
        return None, f"cuda-python is not installed ({INSTALL_GPU})"
    try:
        bindings = importlib.import_module("cuda.bindings")
        runtime = importlib.import_module("cuda.bindings.runtime")
    except Exception as exc:  # noqa: BLE001 - a broken install is "no CUDA", with its reason
        return None, f"cuda-python cannot be imported ({type(exc).__name__}: {exc})"
    version = str(getattr(bindings, "__version__", "0"))
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_BINDINGS:
        return None, (f"cuda-python (cuda-bindings) {version} is older than 12.9.1, which "
                      "visionrt needs: pip install -U 'cuda-python>=12.9.1'")
    return runtime, None


def probe() -> CudaStatus:
    """The CUDA devices usable here, or why there are none. Never raises."""
    rt, why = _runtime()
    if rt is None:
        return CudaStatus((), why)
    try:
        err, count = rt.cudaGetDeviceCount()
    except Exception as exc:  # noqa: BLE001 - a missing driver library raises from the loader
        return CudaStatus((), f"the CUDA libraries could not be loaded ({type(exc).__name__}: "
                              f"{exc})")
    if err != rt.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        return CudaStatus((), _INIT_ERRORS.get(name, f"CUDA could not be initialised "
                                                     f"({name}: {_error_text(rt, err)})"), name)
    if not count:
        return CudaStatus((), "no CUDA device found (no NVIDIA GPU is visible to this process)")
    devices = []
    for index in range(int(count)):
        err, props = rt.cudaGetDeviceProperties(index)
        if err == rt.cudaError_t.cudaSuccess:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else \
                str(props.name)
            devices.append(DeviceInfo(index, name.rstrip("\x00").strip(),
                                      (int(props.major), int(props.minor)),
                                      int(props.totalGlobalMem)))
    return CudaStatus(tuple(devices), None if devices else "no CUDA device could be queried")


def device_count() -> int:
    """Number of CUDA devices usable here; 0 when there is no driver, GPU or cuda-python."""
    return len(probe().devices)


def unavailable_reason(index: int = 0) -> str | None:
    """``None`` when CUDA device ``index`` is usable, else a sentence saying what is missing."""
    return _reason(probe(), index)


def _reason(status: CudaStatus, index: int) -> str | None:
    if status.reason is not None:
        return status.reason
    if not 0 <= index < len(status.devices):
        return f"device cuda:{index} does not exist ({len(status.devices)} CUDA device(s) found)"
    return None


def device_info(index: int = 0) -> DeviceInfo:
    """Name, compute capability and memory of CUDA device ``index``.

    Raises:
        BackendUnavailableError: no such device (the message says why).
    """
    status = probe()
    reason = _reason(status, index)
    if reason is not None:
        raise BackendUnavailableError(reason, source=f"cuda:{index}")
    return status.devices[index]


def tensorrt_unavailable_reason(index: int = 0) -> str | None:
    """Why TensorRT engines cannot be built or run on ``cuda:index`` here (None: they can)."""
    installed = _optional.available("tensorrt")
    gpu = unavailable_reason(index)
    if not installed and gpu:
        return f"TensorRT is not installed ({INSTALL_TENSORRT}), and {gpu}"
    if not installed:
        return f"TensorRT is not installed ({INSTALL_TENSORRT})"
    return f"TensorRT needs an NVIDIA GPU, but {gpu}" if gpu else None


def require_tensorrt(index: int = 0) -> ModuleType:
    """The ``tensorrt`` module, after the probe found CUDA device ``index``.

    Raises:
        BackendUnavailableError: no usable GPU (and whether TensorRT is installed).
        MissingDependencyError: a GPU but no TensorRT (names the extra).
    """
    gpu = unavailable_reason(index)
    if gpu is not None:
        raise BackendUnavailableError(tensorrt_unavailable_reason(index) or gpu,
                                      source=f"cuda:{index}")
    return _optional.require("tensorrt", extra="tensorrt")


def _error_text(rt: Any, err: Any) -> str:
    try:
        text = rt.cudaGetErrorString(err)[1]
    except Exception:  # noqa: BLE001 - the text is only decoration
        return "?"
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def check(result: Any, what: str) -> Any:
    """Unwrap a cuda-bindings ``(err, *values)`` result: the value(s), or an error naming the call.

    Raises:
        ResourceExhaustedError: out of memory. InferenceError: any other CUDA error.
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        rt, _ = _runtime()
        message = f"{what} failed: {getattr(err, 'name', err)} ({_error_text(rt, err)})"
        if getattr(err, "name", "") in ("cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY"):
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

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return self.array[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int


class CudaApi:
    """The CUDA runtime calls of the TensorRT backend and the GPU benchmark timer."""

    name = "cuda-python"

    def __init__(self) -> None:
        rt, why = _runtime()
        if rt is None:
            raise BackendUnavailableError(why or "cuda-python is not usable", hint=INSTALL_GPU)
        self.rt = rt
        self._local = threading.local()

    def activate(self, index: int) -> None:
        """Make device ``index`` current for the calling thread (the runtime API's current
        device is per thread); cheap after the first call on a thread."""
        if getattr(self._local, "device", None) != index:
            check(self.rt.cudaSetDevice(index), "cudaSetDevice")
            self._local.device = index

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(int(check(self.rt.cudaMalloc(nbytes), "cudaMalloc")), nbytes)

    def alloc_host(self, nbytes: int) -> HostBuffer:
        ptr = int(check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return HostBuffer(ptr, nbytes, array)

    def free_device(self, buffer: DeviceBuffer) -> None:
        check(self.rt.cudaFree(buffer.ptr), "cudaFree")

    def free_host(self, buffer: HostBuffer) -> None:
        check(self.rt.cudaFreeHost(buffer.ptr), "cudaFreeHost")

    def create_stream(self) -> Any:
        flags = self.rt.cudaStreamNonBlocking  # the legacy default stream adds device syncs
        return check(self.rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        """The stream's address as the int TensorRT's ``execute_async_v3`` takes."""
        from cuda.bindings.utils import get_cuda_native_handle

        return int(get_cuda_native_handle(stream))

    def destroy_stream(self, stream: Any) -> None:
        check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream),
              "cudaMemcpyAsync(HtoD)")

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream),
              "cudaMemcpyAsync(DtoH)")

    def synchronize(self, stream: Any) -> None:
        check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def capture_graph(self, stream: Any, enqueue: Callable[[], bool]) -> Any | None:
        """Capture what ``enqueue()`` puts on ``stream`` into an executable CUDA graph.

        Returns None (and leaves the stream usable) when ``enqueue`` returns False, i.e. the
        engine cannot be captured; the caller then runs without a graph.
        """
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        try:
            ok = bool(enqueue())
        except BaseException:
            self.rt.cudaStreamEndCapture(stream)  # leave the stream usable; the first error wins
            raise
        graph = check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        if not ok or graph is None:
            if graph is not None:
                self.rt.cudaGraphDestroy(graph)
            return None
        executable = check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self.rt.cudaGraphDestroy(graph)
        return executable

    def launch_graph(self, graph: Any, stream: Any) -> None:
        check(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        check(self.rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")

    # -- events (the GPU benchmark's timer) ----------------------------------------------------------
    def create_event(self) -> Any:
        return check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record_event(self, event: Any, stream: Any = 0) -> None:
        check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two recorded events, after waiting for ``end``."""
        check(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")


def get_api() -> CudaApi:
    """The CUDA layer, when cuda-python is usable.

    Raises:
        BackendUnavailableError: cuda-python is missing, broken or too old.
    """
    return CudaApi()
