"""The gpu double's ``tensorrt`` module (tests/gpu_double): TensorRT 10/11's Python API surface
that visionrt uses, for the version configured in ``$VISIONRT_GPU_DOUBLE`` (see _gpu_double)."""

from _gpu_double import trt_api as _api
from _gpu_double.state import state as _state
from _gpu_double.trt_api import (  # noqa: F401
    DataType,
    Dims,
    ExecutionContextAllocationStrategy,
    HardwareCompatibilityLevel,
    IHostMemory,
    ILogger,
    Logger,
    MemoryPoolType,
    TensorIOMode,
    nptype,
)
from _gpu_double.trt_build import (  # noqa: F401
    Builder,
    IBuilderConfig,
    INetworkDefinition,
    IOptimizationProfile,
    ITimingCache,
    OnnxParser,
)
from _gpu_double.trt_engine import ICudaEngine, IExecutionContext, Runtime  # noqa: F401

IS_GPU_DOUBLE = True
_LAZY = {"BuilderFlag": _api.builder_flags, "NetworkDefinitionCreationFlag": _api.network_flags}


def __getattr__(name: str):
    # Read at each use, so _gpu_double.configure(trt_version=...) takes effect at once.
    if name == "__version__":
        return _state().config.trt_version
    if name in _LAZY:
        return _LAZY[name]()
    raise AttributeError(f"module 'tensorrt' has no attribute {name!r}")
