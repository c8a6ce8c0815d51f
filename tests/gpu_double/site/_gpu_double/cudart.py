"""``cuda.bindings.runtime`` as visionrt uses it, on host memory.

Same calling convention as cuda-bindings: every call returns a tuple ``(cudaError_t, *results)``
(results are ``None`` on error) and never raises for a CUDA error. Streams are FIFO queues that
run when synchronized; pinned copies read and write host memory when the stream reaches them, as a
DMA engine would, so a missing synchronize shows up as stale data. Graph capture records the ops
enqueued on the capturing stream; "potentially unsafe" calls during a capture fail it, as in CUDA.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Any

import numpy as np

from _gpu_double.state import Capture, Stream, host_read, host_write, state

IS_GPU_DOUBLE = True
RUNTIME_VERSION = 13000


class cudaError_t(enum.IntEnum):  # noqa: N801 - the real names
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


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
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

    def getPtr(self) -> int:  # noqa: N802 - the real name
        return self._value

    def __int__(self) -> int:  # deprecated in cuda-bindings 13, still works
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value:#x}>"


class cudaStream_t(_Handle):  # noqa: N801
    pass


class cudaEvent_t(_Handle):  # noqa: N801
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.time: float | None = None
        self.stream: Stream | None = None


class cudaGraph_t(_Handle):  # noqa: N801
    def __init__(self, ops: list) -> None:
        super().__init__(_next_id())
        self.ops, self.destroyed = ops, False


class cudaGraphExec_t(cudaGraph_t):  # noqa: N801
    pass


class cudaDeviceProp:  # noqa: N801
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


# -- devices ---------------------------------------------------------------------------------------
def cudaGetDeviceCount():  # noqa: N802
    err = _driver_error()
    return _fail(err, 1) if err else _ok(len(state().config.devices))


def cudaGetDeviceProperties(device: int):  # noqa: N802
    err = _driver_error()
    if err:
        return _fail(err, 1)
    devices = state().config.devices
    if not 0 <= device < len(devices):
        return _fail(cudaError_t.cudaErrorInvalidDevice, 1)
    d = devices[device]
    return _ok(cudaDeviceProp(d.name, d.cc, d.memory))


def cudaSetDevice(device: int):  # noqa: N802
    err = _driver_error()
    if err:
        return _fail(err)
    if not 0 <= device < len(state().config.devices):
        return _fail(cudaError_t.cudaErrorInvalidDevice)
    state().current_device = device
    return _ok()


def cudaGetDevice():  # noqa: N802
    err = _driver_error()
    return _fail(err, 1) if err else _ok(state().current_device)


def cudaRuntimeGetVersion():  # noqa: N802
    return _ok(RUNTIME_VERSION)


def cudaDriverGetVersion():  # noqa: N802
    driver = state().config.driver
    return _ok(0 if driver == "no-driver" else 12020 if driver == "old-driver" else 13000)


def cudaGetErrorString(err: cudaError_t):  # noqa: N802
    return _ok(_MESSAGES.get(err, getattr(err, "name", str(err))).encode())


def cudaGetErrorName(err: cudaError_t):  # noqa: N802
    return _ok(getattr(err, "name", str(err)).encode())


def cudaMemGetInfo():  # noqa: N802
    err = _driver_error()
    if err:
        return _fail(err, 2)
    total = state().config.devices[state().current_device].memory
    return _ok(total - state().device_bytes_in_use(state().current_device), total)


def cudaDeviceSynchronize():  # noqa: N802
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()
    return _ok()


# -- memory ----------------------------------------------------------------------------------------
def cudaMalloc(nbytes: int):  # noqa: N802
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err, 1)
    allocation = state().allocate_device(int(nbytes))
    if allocation is None:
        return _fail(cudaError_t.cudaErrorMemoryAllocation, 1)
    state().count("cudaMalloc")
    return _ok(allocation.ptr)


def cudaMallocHost(nbytes: int):  # noqa: N802
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err, 1)
    state().count("cudaMallocHost")
    return _ok(state().allocate_pinned(int(nbytes)).ptr)


def cudaFree(ptr: int):  # noqa: N802
    err = _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()  # cudaFree synchronizes the device
    if not state().free(int(ptr), pinned=False):
        return _fail(cudaError_t.cudaErrorInvalidValue)
    state().count("cudaFree")
    return _ok()


def cudaFreeHost(ptr: int):  # noqa: N802
    err = _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()
    if not state().free(int(ptr), pinned=True):
        return _fail(cudaError_t.cudaErrorInvalidValue)
    state().count("cudaFreeHost")
    return _ok()


def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None:
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    dst, src, nbytes = int(dst), int(src), int(nbytes)
    st = state()
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        device = st.device_view(dst, nbytes, "cudaMemcpyAsync(HtoD) destination")
        if st.pinned_allocation(src, nbytes) is None:  # pageable: staged at once, host blocks
            if target.capture is not None:
                target.capture.invalid = "pageable memcpy during capture"
                return _fail(cudaError_t.cudaErrorStreamCaptureUnsupported)
            device[:] = np.frombuffer(host_read(src, nbytes), np.uint8)
            return _ok()
        st.enqueue(target, lambda: _copy_in(dst, src, nbytes))
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        st.device_view(src, nbytes, "cudaMemcpyAsync(DtoH) source")
        if st.pinned_allocation(dst, nbytes) is None:
            if target.capture is not None:
                target.capture.invalid = "pageable memcpy during capture"
                return _fail(cudaError_t.cudaErrorStreamCaptureUnsupported)
            st.drain(target)
            host_write(dst, st.device_view(src, nbytes, "cudaMemcpyAsync(DtoH) source"))
            return _ok()
        st.enqueue(target, lambda: _copy_out(dst, src, nbytes))
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToDevice:
        st.enqueue(target, lambda: _copy_device(dst, src, nbytes))
    else:
        return _fail(cudaError_t.cudaErrorInvalidValue)
    st.count("cudaMemcpyAsync")
    return _ok()


def _copy_in(dst: int, src: int, nbytes: int) -> None:
    state().pinned_allocation(src, nbytes)  # still alive when the copy runs
    state().device_view(dst, nbytes, "HtoD copy")[:] = np.frombuffer(host_read(src, nbytes),
                                                                     np.uint8)


def _copy_out(dst: int, src: int, nbytes: int) -> None:
    state().pinned_allocation(dst, nbytes)
    host_write(dst, state().device_view(src, nbytes, "DtoH copy"))


def _copy_device(dst: int, src: int, nbytes: int) -> None:
    state().device_view(dst, nbytes, "DtoD copy")[:] = state().device_view(src, nbytes,
                                                                           "DtoD copy")


# -- streams and events ----------------------------------------------------------------------------
def cudaStreamCreateWithFlags(flags: int):  # noqa: N802
    err = _driver_error()
    if err:
        return _fail(err, 1)
    handle = _next_id()
    with state().lock:
        state().streams[handle] = Stream(handle, state().current_device, int(flags))
    state().count("streams_created")
    return _ok(cudaStream_t(handle))


def cudaStreamCreate():  # noqa: N802
    return cudaStreamCreateWithFlags(cudaStreamDefault)


def cudaStreamDestroy(stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None or target.handle == 0:
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    state().drain(target)  # queued work still completes
    target.destroyed = True
    state().count("streams_destroyed")
    return _ok()


def cudaStreamSynchronize(stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None:
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    if target.capture is not None or _capture_guard():
        if target.capture is not None:
            target.capture.invalid = "synchronize during capture"
        return _fail(cudaError_t.cudaErrorStreamCaptureUnsupported)
    state().drain(target)
    return _ok()


def cudaEventCreate():  # noqa: N802
    return _ok(cudaEvent_t(_next_id()))


def cudaEventCreateWithFlags(flags: int):  # noqa: N802
    return cudaEventCreate()


def cudaEventRecord(event: cudaEvent_t, stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None or not isinstance(event, cudaEvent_t):
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    event.time, event.stream = None, target

    def mark() -> None:
        event.time = time.perf_counter()

    with target.lock:
        idle = target.capture is None and not target.queue
    if idle:  # nothing ahead of it on the stream: the GPU reaches the event at once
        mark()
    else:
        state().enqueue(target, mark)
    return _ok()


def cudaEventSynchronize(event: cudaEvent_t):  # noqa: N802
    if event.stream is not None:
        state().drain(event.stream)
    return _ok()


def cudaEventElapsedTime(start: cudaEvent_t, end: cudaEvent_t):  # noqa: N802
    if start.time is None or end.time is None:
        return _fail(cudaError_t.cudaErrorNotReady, 1)
    return _ok((end.time - start.time) * 1000.0)


def cudaEventDestroy(event: cudaEvent_t):  # noqa: N802
    return _ok()


# -- graphs ----------------------------------------------------------------------------------------
def cudaStreamBeginCapture(stream: Any, mode: cudaStreamCaptureMode):  # noqa: N802
    target = _stream(stream)
    if target is None or target.handle == 0:  # the legacy stream cannot be captured
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle if target is None
                     else cudaError_t.cudaErrorStreamCaptureUnsupported)
    with target.lock:
        if target.capture is not None:
            return _fail(cudaError_t.cudaErrorInvalidValue)
        state().drain(target)
        target.capture = Capture(int(mode), threading.get_ident())
    return _ok()


def cudaStreamEndCapture(stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None or target.capture is None:
        return _fail(cudaError_t.cudaErrorInvalidValue, 1)
    capture = target.capture
    if capture.mode == cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal and \
            capture.thread != threading.get_ident():
        return _fail(cudaError_t.cudaErrorStreamCaptureWrongThread, 1)
    target.capture = None
    if capture.invalid:
        return _fail(cudaError_t.cudaErrorStreamCaptureInvalidated, 1)
    return _ok(cudaGraph_t(capture.ops))


def cudaGraphInstantiate(graph: cudaGraph_t, flags: int = 0):  # noqa: N802
    if not isinstance(graph, cudaGraph_t) or graph.destroyed:
        return _fail(cudaError_t.cudaErrorInvalidValue, 1)
    state().count("graphs_instantiated")
    return _ok(cudaGraphExec_t(list(graph.ops)))


def cudaGraphLaunch(graph: cudaGraphExec_t, stream: Any):  # noqa: N802
    target = _stream(stream)
    if target is None or not isinstance(graph, cudaGraphExec_t):
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    if graph.destroyed:
        raise state().violate("cudaGraphLaunch of a destroyed graph")
    for op in graph.ops:
        state().enqueue(target, op)
    state().count("graph_launches")
    return _ok()


def cudaGraphDestroy(graph: cudaGraph_t):  # noqa: N802
    graph.destroyed = True
    return _ok()


def cudaGraphExecDestroy(graph: cudaGraphExec_t):  # noqa: N802
    graph.destroyed = True
    return _ok()
