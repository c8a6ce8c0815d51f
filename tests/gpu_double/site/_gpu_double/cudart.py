"""``cuda.bindings.runtime`` as visionrt uses it, on host memory.

Same calling convention as cuda-bindings: every call returns a tuple ``(cudaError_t, *results)``
(results are ``None`` on error) and never raises for a CUDA error. Streams are FIFO queues that
run when synchronized; pinned copies read and write host memory when the stream reaches them, as a
DMA engine would, so a missing synchronize shows up as stale data. Graph capture records the ops
enqueued on the capturing stream; "potentially unsafe" calls during a capture fail it, as in CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from _gpu_double.cudart_streams import *  # noqa: F401,F403 - one module, as cuda.bindings has
from _gpu_double.cudart_types import *  # noqa: F401,F403
from _gpu_double.cudart_types import (
    _MESSAGES,
    IS_GPU_DOUBLE,  # noqa: F401
    RUNTIME_VERSION,
    _capture_guard,
    _driver_error,
    _fail,
    _ok,
    _stream,
    cudaDeviceProp,
    cudaError_t,
    cudaMemcpyKind,
)
from _gpu_double.state import host_read, host_write, state


# -- devices ---------------------------------------------------------------------------------------
def cudaGetDeviceCount():
    err = _driver_error()
    return _fail(err, 1) if err else _ok(len(state().config.devices))


def cudaGetDeviceProperties(device: int):
    err = _driver_error()
    if err:
        return _fail(err, 1)
    devices = state().config.devices
    if not 0 <= device < len(devices):
        return _fail(cudaError_t.cudaErrorInvalidDevice, 1)
    d = devices[device]
    return _ok(cudaDeviceProp(d.name, d.cc, d.memory))


def cudaSetDevice(device: int):
    err = _driver_error()
    if err:
        return _fail(err)
    if not 0 <= device < len(state().config.devices):
        return _fail(cudaError_t.cudaErrorInvalidDevice)
    state().current_device = device
    return _ok()


def cudaGetDevice():
    err = _driver_error()
    return _fail(err, 1) if err else _ok(state().current_device)


def cudaRuntimeGetVersion():
    return _ok(RUNTIME_VERSION)


def cudaDriverGetVersion():
    driver = state().config.driver
    return _ok(0 if driver == "no-driver" else 12020 if driver == "old-driver" else 13000)


def cudaGetErrorString(err: cudaError_t):
    return _ok(_MESSAGES.get(err, getattr(err, "name", str(err))).encode())


def cudaGetErrorName(err: cudaError_t):
    return _ok(getattr(err, "name", str(err)).encode())


def cudaMemGetInfo():
    err = _driver_error()
    if err:
        return _fail(err, 2)
    total = state().config.devices[state().current_device].memory
    return _ok(total - state().device_bytes_in_use(state().current_device), total)


def cudaDeviceSynchronize():
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()
    return _ok()


# -- memory ----------------------------------------------------------------------------------------
def cudaMalloc(nbytes: int):
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err, 1)
    allocation = state().allocate_device(int(nbytes))
    if allocation is None:
        return _fail(cudaError_t.cudaErrorMemoryAllocation, 1)
    state().count("cudaMalloc")
    return _ok(allocation.ptr)


def cudaMallocHost(nbytes: int):
    err = _driver_error() or _capture_guard()
    if err:
        return _fail(err, 1)
    state().count("cudaMallocHost")
    return _ok(state().allocate_pinned(int(nbytes)).ptr)


def cudaFree(ptr: int):
    err = _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()  # cudaFree synchronizes the device
    if not state().free(int(ptr), pinned=False):
        return _fail(cudaError_t.cudaErrorInvalidValue)
    state().count("cudaFree")
    return _ok()


def cudaFreeHost(ptr: int):
    err = _capture_guard()
    if err:
        return _fail(err)
    state().drain_all()
    if not state().free(int(ptr), pinned=True):
        return _fail(cudaError_t.cudaErrorInvalidValue)
    state().count("cudaFreeHost")
    return _ok()


def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, stream: Any):
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
