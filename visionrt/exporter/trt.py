"""TensorRT 10/11 engines from the bundle's ONNX files (GPU only).

Precision is already in the ONNX graph (fp16 tensors, or S8S8 Q/DQ for int8), so the network is
strongly typed and no precision flags or implicit calibrators are used: the same code builds on
TensorRT 10 (STRONGLY_TYPED flag) and 11 (always strongly typed, flags removed). The runtime's one
CUDA probe finds a device *before* any Builder is created: without one TensorRT can crash the
process.
Engines are verified by the runtime's TensorRT backend (``visionrt.runtime.trt``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionrt.errors import BackendUnavailableError, VisionRTError
from visionrt.exporter.onnx import INPUT_NAME
from visionrt.runtime import _cuda
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)


class EngineBuildError(VisionRTError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


@dataclass(frozen=True)
class EngineConfig:
    """Build options; the profile covers batch ``min_batch..max_batch`` tuned for ``opt_batch``."""

    max_batch: int
    opt_batch: int
    min_batch: int = 1
    workspace_gb: float = 4.0
    optimization_level: int = 3
    timing_cache: Path | None = None


def require_tensorrt(device: int = 0) -> Any:
    """The tensorrt module, after the CUDA probe found ``cuda:device``.

    Raises:
        BackendUnavailableError: no GPU / driver here (and whether TensorRT is installed).
        MissingDependencyError: a GPU, but tensorrt is not installed.
    """
    try:
        return _cuda.require_tensorrt(device)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"cannot build TensorRT engines: {exc}", source=exc.source,
            hint="build the engine on the GPU host that will run it (the bundle's ONNX files "
            "are portable), or leave out --engine") from exc


def _network_flags(trt: Any) -> int:
    major = int(trt.__version__.split(".")[0])
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    # TensorRT 10 needs the flag for strong typing; 11 is always strongly typed (flag ignored).
    return 1 << int(flag) if major < 11 and flag is not None else 0


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    network = builder.create_network(_network_flags(trt))
    if network is None:
        raise EngineBuildError("TensorRT could not create a network definition")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path.name}: " + " | ".join(errors),
                               source=str(onnx_path), actual=errors)
    return network, parser


def _builder_config(trt: Any, builder: Any, spec: ModelSpec, config: EngineConfig,
                    precision: str, cache_bytes: bytes) -> tuple[Any, Any]:
    build = builder.create_builder_config()
    build.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gb * 2**30))
    build.builder_optimization_level = config.optimization_level
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        build.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32, not TF32 tensor-core math
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, spec.input_shape(config.min_batch),
                      spec.input_shape(config.opt_batch), spec.input_shape(config.max_batch))
    if build.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"invalid optimization profile {config.min_batch}/"
                               f"{config.opt_batch}/{config.max_batch} for input {INPUT_NAME}")
    cache = build.create_timing_cache(cache_bytes)
    if cache is None or not build.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError("TensorRT refused the timing cache (built on another GPU or "
                               "TensorRT version?); delete it and build again",
                               source=str(config.timing_cache))
    return build, cache


def build_engine(onnx_path: Path, engine_path: Path, spec: ModelSpec, config: EngineConfig,
                 *, precision: str) -> dict[str, Any]:
    """Build a strongly typed engine from ``onnx_path`` and write it to ``engine_path``.

    Returns:
        the manifest's ``tensorrt`` record (version, GPU, compute capability, profile, ...).

    Raises:
        BackendUnavailableError, MissingDependencyError, EngineBuildError.
    """
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise EngineBuildError("TensorRT could not create a Builder (CUDA initialisation failed)")
    network, _parser = _parse(trt, builder, logger, onnx_path)
    cache_path = config.timing_cache
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    build, cache = _builder_config(trt, builder, spec, config, precision, cache_bytes)
    plan = builder.build_serialized_network(network, build)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path.name}; "
                               "see the TensorRT log above", source=str(onnx_path))
    engine_path.write_bytes(bytes(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(cache.serialize()))
    device = _cuda.device_info(0)
    return {"version": trt.__version__, "gpu": device.name,
            "compute_capability": device.capability,
            "profile": {"input": INPUT_NAME, "min": list(spec.input_shape(config.min_batch)),
                        "opt": list(spec.input_shape(config.opt_batch)),
                        "max": list(spec.input_shape(config.max_batch))},
            "strongly_typed": True, "builder_optimization_level": config.optimization_level,
            "workspace_bytes": int(config.workspace_gb * 2**30),
            "timing_cache": str(cache_path) if cache_path else None,
            "built_from": onnx_path.name}
