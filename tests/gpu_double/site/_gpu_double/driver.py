"""``cuda.bindings.driver``: the few driver calls anything here may make (torch imports it)."""

from __future__ import annotations

import enum

from _gpu_double.state import state

IS_GPU_DOUBLE = True


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101
    CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803


class DynamicLibNotFoundError(RuntimeError):
    """What cuda.pathfinder raises when there is no libcuda.so at all."""


def _status() -> CUresult:
    driver = state().config.driver
    if driver in ("no-driver", "broken"):
        raise DynamicLibNotFoundError('"cuda" is an NVIDIA driver library and can only be found '
                                      "via system search (gpu double)")
    if driver == "no-device":
        return CUresult.CUDA_ERROR_NO_DEVICE
    return CUresult.CUDA_SUCCESS


def cuInit(flags: int):
    return (_status(),)


def cuDriverGetVersion():
    status = _status()
    return status, (12020 if state().config.driver == "old-driver" else 13000)


def cuDeviceGetCount():
    status = _status()
    return (status, len(state().usable_devices)) if status == CUresult.CUDA_SUCCESS else (status,
                                                                                          None)


def cuGetErrorString(error: CUresult):
    return CUresult.CUDA_SUCCESS, getattr(error, "name", str(error)).encode()
