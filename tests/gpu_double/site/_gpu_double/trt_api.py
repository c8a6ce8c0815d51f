"""TensorRT's enums, Logger, Dims, IHostMemory and nptype, per API generation (10.x or 11.x).

TensorRT 11 removed weak typing: no BuilderFlag.FP16/INT8/BF16/FP8/INT4/FP4, no precision
constraints, no EXPLICIT_BATCH network flag (STRONGLY_TYPED stays, ignored). The enums are built
for the configured version, so code that reaches for a removed name fails as it would on 11.
"""

from __future__ import annotations

import enum
import functools
import sys
from typing import Any

import numpy as np

from _gpu_double.state import state

_FLAGS_10 = ("FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
             "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS",
             "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS",
             "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8", "ERROR_ON_TIMING_CACHE_MISS",
             "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL",
             "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY",
             "FP4", "EDITABLE_TIMING_CACHE")
REMOVED_IN_11 = {"FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                 "PREFER_PRECISION_CONSTRAINTS", "REJECT_EMPTY_ALGORITHMS"}
PRECISION_FLAGS = {"FP16", "INT8", "BF16", "FP8", "INT4", "FP4"}


def major() -> int:
    return int(state().config.trt_version.split(".")[0])


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9

    @property
    def itemsize(self) -> float:
        sizes = {DataType.INT4: 0.5, DataType.BF16: 2, DataType.FP8: 1}
        return sizes.get(self, np.dtype(_NUMPY[self]).itemsize)


_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
          DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8,
          DataType.INT64: np.int64}
# ONNX TensorProto element types -> TensorRT types (INT64 is kept; TensorRT 10 supports it).
ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32,
              9: DataType.BOOL, 2: DataType.UINT8, 16: DataType.BF16, 7: DataType.INT64}


def nptype(dtype: DataType) -> type:
    """numpy type of a TensorRT type; TypeError for types numpy lacks (BF16, FP8, INT4)."""
    if dtype not in _NUMPY:
        raise TypeError(f"Could not resolve TensorRT datatype to an equivalent numpy datatype "
                        f"({dtype.name})")
    return _NUMPY[dtype]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class ExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


@functools.cache
def _flags(major: int) -> tuple[type[enum.IntEnum], type[enum.IntEnum]]:
    names = [n for n in _FLAGS_10 if major < 11 or n not in REMOVED_IN_11]
    builder = enum.IntEnum("BuilderFlag", {name: _FLAGS_10.index(name) for name in names})
    members = {"STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2,
               "PREFER_AOT_PYTHON_PLUGINS": 3}
    if major < 11:
        members = {"EXPLICIT_BATCH": 0, **members}
    return builder, enum.IntEnum("NetworkDefinitionCreationFlag", members)


def builder_flags() -> type[enum.IntEnum]:
    return _flags(major())[0]


def network_flags() -> type[enum.IntEnum]:
    return _flags(major())[1]


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity


class Logger(ILogger):
    """Prints like TensorRT's default logger (stderr) and keeps every line in the state."""

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        self.min_severity = Severity(min_severity)

    def log(self, severity: Severity, msg: str) -> None:
        state().trt_log.append((int(severity), msg))
        if severity <= self.min_severity:
            tag = "FEWIV"[int(severity)]
            print(f"[TRT double] [{tag}] {msg}", file=sys.stderr)


def log_error(logger: Logger | None, message: str) -> None:
    (logger or Logger()).log(Severity.ERROR, message)


class Dims(tuple):
    """TensorRT's Dims: a tuple of ints, -1 for a dynamic dimension."""

    def __new__(cls, values: Any = ()) -> Dims:
        return super().__new__(cls, (int(v) for v in values))


class IHostMemory:
    """Serialized bytes owned by TensorRT (``bytes(plan)`` copies them out)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return len(self._data)

    @property
    def dtype(self) -> DataType:
        return DataType.UINT8


def as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, IHostMemory):
        return bytes(data)
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        return bytes(data)
    raise TypeError(f"{what}(): incompatible function arguments: {type(data).__name__}")
