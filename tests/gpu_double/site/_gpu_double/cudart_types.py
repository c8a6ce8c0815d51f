"""Types and helpers of the cuda.bindings.runtime double: error codes, enums, opaque handles,
the ``(err, *values)`` convention, the driver state and capture rules."""

from __future__ import annotations

import enum
import threading
from typing import Any

from _gpu_double.state import Stream, state

IS_GPU_DOUBLE = True
RUNTIME_VERSION = 13000


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureWrongThread = 908
    cudaErrorUnknown = 999


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


cudaStreamDefault = 0
cudaStreamNonBlocking = 1
_MESSAGES = {
    cudaError_t.cudaErrorInsufficientDriver: "CUDA driver version is insufficient for CUDA "
                                             "runtime version",
    cudaError_t.cudaErrorNoDevice: "no CUDA-capable device is detected",
    cudaError_t.cudaErrorMemoryAllocation: "out of memory",
    cudaError_t.cudaErrorStreamCaptureUnsupported: "operation not permitted when stream is "
                                                   "capturing",
}
_ids = iter(range(0x5000, 1 << 40, 0x10))
_ids_lock = threading.Lock()


def _next_id() -> int:
    with _ids_lock:
        return next(_ids)


class _Handle:
    """cudaStream_t / cudaEvent_t / cudaGraph_t / cudaGraphExec_t: an opaque handle."""

    def __init__(self, value: int) -> None:
        self._value = value

    def getPtr(self) -> int:
        return self._value

    def __int__(self) -> int:  # deprecated in cuda-bindings 13, still works
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value:#x}>"


class cudaStream_t(_Handle):
    pass


class cudaEvent_t(_Handle):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.time: float | None = None
        self.stream: Stream | None = None


class cudaGraph_t(_Handle):
    def __init__(self, ops: list) -> None:
        super().__init__(_next_id())
        self.ops, self.destroyed = ops, False


class cudaGraphExec_t(cudaGraph_t):
    pass


class cudaDeviceProp:
    def __init__(self, name: str, cc: tuple[int, int], memory: int) -> None:
        self.name = name.encode() + b"\x00" * (256 - len(name))  # a fixed char[256] as in C
        self.major, self.minor = cc
        self.totalGlobalMem = memory
        self.multiProcessorCount = 58


def _driver_error() -> cudaError_t | None:
    driver = state().config.driver
    if driver == "broken":
        raise RuntimeError("libcudart.so.13: cannot open shared object file (gpu double)")
    if driver in ("no-driver", "old-driver"):
        return cudaError_t.cudaErrorInsufficientDriver
    if driver == "no-device":
        return cudaError_t.cudaErrorNoDevice
    return None


def _fail(err: cudaError_t, outputs: int = 0) -> tuple:
    return (err, *([None] * outputs))


def _ok(*values: Any) -> tuple:
    return (cudaError_t.cudaSuccess, *values)


def _capture_guard() -> cudaError_t | None:
    """A "potentially unsafe" call (allocation, synchronization) during a capture fails it."""
    me = threading.get_ident()
    for stream in state().capturing_streams():
        capture = stream.capture
        if capture.mode != cudaStreamCaptureMode.cudaStreamCaptureModeRelaxed and (
                capture.mode == cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
                or capture.thread == me):
            capture.invalid = capture.invalid or "unsafe call during capture"
            return cudaError_t.cudaErrorStreamCaptureUnsupported
    return None


def _handle(stream: Any) -> int:
    return stream.getPtr() if isinstance(stream, _Handle) else int(stream)


def _stream(stream: Any) -> Stream | None:
    handle = _handle(stream)
    if handle == 0:
        return _legacy_stream()
    return state().stream(handle)


def _legacy_stream() -> Stream:
    with state().lock:
        if 0 not in state().streams:
            state().streams[0] = Stream(0, state().current_device, cudaStreamDefault)
        return state().streams[0]
