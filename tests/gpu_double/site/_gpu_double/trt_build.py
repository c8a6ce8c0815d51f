"""Builder, INetworkDefinition, OnnxParser, IBuilderConfig, optimization profiles, timing cache.

The "engine" a build serializes is a plan: a JSON header (TensorRT version, compute capability and
name of the build GPU, I/O tensors, profiles, flags) followed by the ONNX model it was parsed from,
which the runtime executes through ONNX Runtime. The parser refuses what TensorRT's ONNX parser
refuses and visionrt could produce: asymmetric (uint8 / non-zero zero point) Q/DQ and
QOperator-format integer ops.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from _gpu_double import cuda_side, trt_api
from _gpu_double.state import state
from _gpu_double.trt_api import DataType, Dims, IHostMemory, log_error

PLAN_MAGIC = b"GPUDOUBLE-PLAN\x00"
CACHE_MAGIC = b"GPUDOUBLE-TCACHE\x00"
UNSUPPORTED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv",
                   "QLinearMatMul", "QLinearAdd"}


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: DataType, dim_names: list) -> None:
        self.name, self.shape, self.dtype, self.dim_names = name, shape, dtype, dim_names


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx: bytes | None = None
        self.nodes = 0
        self.name = "network"

    def get_flag(self, flag: int) -> bool:
        return bool(self.flags & (1 << int(flag)))

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return self.nodes

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class IParserError:
    def __init__(self, description: str, node: int = -1) -> None:
        self._description, self._node = description, node

    def desc(self) -> str:
        return self._description

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return f"In node {self._node} with name:  and operator:  (parseGraph): {self._description}"


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self.network, self.logger = network, logger
        self._errors: list[IParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> IParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(str(model))  # resolves external data next to the file
        except Exception as exc:  # noqa: BLE001 - TensorRT reports, it does not raise
            return self._error(f"Failed to parse ONNX model from file: {model} ({exc})")
        return self._import(proto)

    def parse(self, model: Any, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(trt_api.as_bytes(model, "parse"))
            if path is not None:
                from onnx.external_data_helper import load_external_data_for_model

                load_external_data_for_model(proto, str(Path(path).parent))
        except Exception as exc:  # noqa: BLE001
            return self._error(f"Failed to parse ONNX model from bytes ({exc})")
        return self._import(proto)

    def _error(self, message: str, node: int = -1) -> bool:
        self._errors.append(IParserError(message, node))
        log_error(self.logger, f"ModelImporter: {message}")
        return False

    def _import(self, proto: Any) -> bool:
        from onnx import numpy_helper

        initializers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        for index, node in enumerate(proto.graph.node):
            if node.op_type in UNSUPPORTED_OPS:
                return self._error(f"No importer registered for op: {node.op_type}", index)
            problem = _qdq_problem(node, initializers)
            if problem:
                return self._error(problem, index)
        graph_inputs = [v for v in proto.graph.input if v.name not in initializers]
        self.network.inputs = [_tensor(v) for v in graph_inputs]
        self.network.outputs = [_tensor(v) for v in proto.graph.output]
        self.network.onnx = proto.SerializeToString()
        self.network.nodes = len(proto.graph.node)
        return True


def _qdq_problem(node: Any, initializers: dict[str, np.ndarray]) -> str | None:
    """What TensorRT's importer says about a Q/DQ node it cannot take (None: fine)."""
    if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
        return None
    data = initializers.get(node.input[0])
    if node.op_type == "DequantizeLinear" and data is not None and data.dtype != np.int8:
        # e.g. the int32 bias onnxruntime's quantizer writes unless QuantizeBias is off
        return (f"Invalid Node - {node.name}: only activation types allowed as input to this "
                f"layer (DequantizeLinear of {data.dtype}: TensorRT dequantizes INT8/FP8/INT4)")
    zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
    if zero_point is not None and (zero_point.dtype != np.int8 or zero_point.any()):
        return (f"Assertion failed: TensorRT only supports symmetric INT8 quantization; node "
                f"{node.name!r} has a {zero_point.dtype} zero point "
                f"{zero_point.ravel()[:4].tolist()}")
    return None


def _tensor(value: Any) -> ITensor:
    dims = value.type.tensor_type.shape.dim
    shape = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    names = [d.dim_param or None for d in dims]
    return ITensor(value.name, shape, trt_api.ONNX_TYPES[value.type.tensor_type.elem_type], names)


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        return list(self.shapes.get(input, ()))

    def valid(self) -> bool:
        for low, opt, high in self.shapes.values():
            if not (len(low) == len(opt) == len(high)) or any(
                    not 0 < a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
                return False
        return bool(self.shapes)


class ITimingCache:
    def __init__(self, version: str, cc: tuple[int, int], entries: int = 0) -> None:
        self.version, self.cc, self.entries = version, tuple(cc), entries

    def serialize(self) -> IHostMemory:
        header = {"version": self.version, "cc": list(self.cc), "entries": self.entries}
        return IHostMemory(CACHE_MAGIC + json.dumps(header).encode())

    def reset(self) -> bool:
        self.entries = 0
        return True


class IBuilderConfig:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder
        flag = trt_api.builder_flags()
        self._flags = {int(flag.TF32)}  # TF32 is on by default
        self._pools: dict[int, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.builder_optimization_level = 3
        self.hardware_compatibility_level = trt_api.HardwareCompatibilityLevel.NONE
        self.timing_cache: ITimingCache | None = None

    def set_flag(self, flag: int) -> None:
        self._flags.add(int(flag))

    def clear_flag(self, flag: int) -> None:
        self._flags.discard(int(flag))

    def get_flag(self, flag: int) -> bool:
        return int(flag) in self._flags

    def set_memory_pool_limit(self, pool: int, pool_size: int) -> None:
        if int(pool_size) < 0:
            raise ValueError("pool size must be >= 0")
        self._pools[int(pool)] = int(pool_size)

    def get_memory_pool_limit(self, pool: int) -> int:
        return self._pools.get(int(pool), 16 << 30)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not isinstance(profile, IOptimizationProfile) or not profile.valid():
            log_error(self._builder.logger, "IBuilderConfig::addOptimizationProfile: "
                      "optimization profile is invalid (need 0 < min <= opt <= max)")
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def create_timing_cache(self, serialized: Any) -> ITimingCache | None:
        data = trt_api.as_bytes(serialized, "create_timing_cache")
        _, _, cc = cuda_side.current_device()
        if not data:
            return ITimingCache(state().config.trt_version, cc)
        if not data.startswith(CACHE_MAGIC):
            log_error(self._builder.logger, "Timing cache is corrupt or not a TensorRT timing "
                      "cache")
            return None
        header = json.loads(data[len(CACHE_MAGIC):])
        return ITimingCache(header["version"], header["cc"], header["entries"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        _, _, cc = cuda_side.current_device()
        if (cache.version, cache.cc) != (state().config.trt_version, cc) and not ignore_mismatch:
            log_error(self._builder.logger, "Timing cache was created on a different device or "
                      "TensorRT version; mismatch")
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder:
    def __init__(self, logger: Any) -> None:
        if cuda_side.device_count() == 0:
            raise state().violate("trt.Builder() without a CUDA device: the real TensorRT "
                                  "fails (or crashes) here; probe CUDA first")
        self.logger = logger
        state().count("builders")

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        known = sum(1 << int(f) for f in trt_api.network_flags())
        if int(flags) & ~known:
            raise ValueError(f"unknown NetworkDefinitionCreationFlag bits {flags:#x}")
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition,
                                 config: IBuilderConfig) -> IHostMemory | None:
        from _gpu_double.trt_checks import build_problems

        problem = build_problems(network, config)
        if problem:
            log_error(self.logger, problem)
            return None
        index, name, cc = cuda_side.current_device()
        if config.timing_cache is not None:
            config.timing_cache.entries += network.nodes
        state().count("engines_built")
        return IHostMemory(serialize_plan(network, config, name, cc))


def serialize_plan(network: INetworkDefinition, config: IBuilderConfig, gpu: str,
                   cc: tuple[int, int]) -> bytes:
    flag = trt_api.builder_flags()
    header = {
        "version": state().config.trt_version, "cc": list(cc), "gpu": gpu,
        "version_compatible": config.get_flag(flag.VERSION_COMPATIBLE),
        "hardware_compatibility_level": int(config.hardware_compatibility_level),
        "tf32": config.get_flag(flag.TF32),
        "io": [{"name": t.name, "mode": mode, "dtype": int(t.dtype), "shape": list(t.shape),
                "dims": t.dim_names}
               for mode, tensors in ((1, network.inputs), (2, network.outputs)) for t in tensors],
        "profiles": [{name: [list(s) for s in shapes] for name, shapes in p.shapes.items()}
                     for p in config.profiles],
    }
    return pack_plan(header, network.onnx or b"")


def pack_plan(header: dict, onnx_bytes: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return PLAN_MAGIC + struct.pack("<I", len(raw)) + raw + onnx_bytes


def parse_plan(data: bytes) -> tuple[dict, bytes] | None:
    if not data.startswith(PLAN_MAGIC):
        return None
    start = len(PLAN_MAGIC)
    (size,) = struct.unpack("<I", data[start:start + 4])
    header = json.loads(data[start + 4:start + 4 + size])
    return header, data[start + 4 + size:]
