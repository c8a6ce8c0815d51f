"""What the TensorRT double asks of CUDA: is there a device, which one is current, and how to
run an engine's work on a stream. Works against the CUDA double or the real cuda-bindings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from _gpu_double.state import Stream, state


def cudart() -> Any:
    from cuda.bindings import runtime

    return runtime


def is_double() -> bool:
    return bool(getattr(cudart(), "IS_GPU_DOUBLE", False))


def device_count() -> int:
    """Devices CUDA reports; 0 on any error (what a Runtime/Builder would then crash on)."""
    try:
        err, count = cudart().cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 - a missing driver library
        return 0
    return int(count) if int(err) == 0 and count else 0


def current_device() -> tuple[int, str, tuple[int, int]]:
    """(index, name, compute capability) of the calling thread's current device."""
    rt = cudart()
    err, index = rt.cudaGetDevice()
    if int(err) != 0:
        raise state().violate(f"TensorRT call without a usable CUDA device ({err!r})")
    err, props = rt.cudaGetDeviceProperties(index)
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
    return int(index), name.rstrip("\x00"), (int(props.major), int(props.minor))


def _stream(stream_handle: int, what: str) -> Stream:
    if stream_handle == 0:
        from _gpu_double.cudart_types import _legacy_stream

        return _legacy_stream()
    stream = state().stream(stream_handle)
    if stream is None:
        raise state().violate(f"{what}: {stream_handle:#x} is not a live CUDA stream")
    return stream


def capturing(stream_handle: int) -> bool:
    return _stream(stream_handle, "execute_async_v3").capture is not None


def enqueue(stream_handle: int, op: Callable[[], None], what: str) -> None:
    """Put ``op`` on the double's stream ``stream_handle`` (0 = the legacy default stream)."""
    state().enqueue(_stream(stream_handle, what), op)


def read_device(ptr: int, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return state().device_view(ptr, nbytes, what).view(dtype).reshape(shape).copy()


def write_device(ptr: int, array: np.ndarray, what: str) -> None:
    view = state().device_view(ptr, array.nbytes, what)
    view[:] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def check_device_range(ptr: int, nbytes: int, what: str) -> None:
    if is_double():
        state().device_view(ptr, nbytes, what)
