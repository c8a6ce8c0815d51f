"""Runtime, ICudaEngine and IExecutionContext (name-based I/O, ``execute_async_v3``).

``deserialize_cuda_engine`` accepts a plan only from the same TensorRT version (or any 10.x/11.x
of the same major when built VERSION_COMPATIBLE and host code is allowed) and the same compute
capability (or Ampere+ for AMPERE_PLUS plans); otherwise it logs and returns None, as TensorRT does.
A context runs only with every input shape set inside the profile and every I/O address set; the
work goes onto the caller's stream and reads/writes the device memory at those addresses.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from _gpu_double import cuda_side, trt_api
from _gpu_double.state import state
from _gpu_double.trt_api import DataType, Dims, IHostMemory, TensorIOMode, log_error
from _gpu_double.trt_build import pack_plan, parse_plan

CONTEXT_SCRATCH = 1 << 20  # device memory an execution context holds for activations


class Runtime:
    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False
        state().count("runtimes")

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        data = trt_api.as_bytes(serialized_engine, "deserialize_cuda_engine")
        if cuda_side.device_count() == 0:
            raise state().violate("deserialize_cuda_engine without a CUDA device: the real "
                                  "TensorRT segfaults here")
        parsed = parse_plan(data)
        if parsed is None:
            log_error(self.logger, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                      "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does "
                      "not match)")
            return None
        header, onnx_bytes = parsed
        problem = self._incompatible(header)
        if problem:
            log_error(self.logger, problem)
            return None
        state().count("engines_deserialized")
        return ICudaEngine(header, onnx_bytes)

    def _incompatible(self, header: dict) -> str | None:
        have = state().config.trt_version
        if header["version"] != have:
            same_major = header["version"].split(".")[0] == have.split(".")[0]
            if not (header["version_compatible"] and same_major and
                    self.engine_host_code_allowed):
                return ("IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The "
                        "engine plan file is not compatible with this version of TensorRT, "
                        f"expecting library version {have} got {header['version']}, please "
                        "rebuild.)")
        _, _, cc = cuda_side.current_device()
        built = tuple(header["cc"])
        portable = header["hardware_compatibility_level"] == 1 and cc >= (8, 0)
        if built != cc and not portable:
            return ("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (The engine "
                    f"plan file is generated on an incompatible device, expecting compute "
                    f"{cc[0]}.{cc[1]} got compute {built[0]}.{built[1]}, please rebuild.)")
        return None


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        self.header, self.onnx_bytes = header, onnx_bytes
        self._io = {t["name"]: t for t in header["io"]}
        self._names = [t["name"] for t in header["io"]]
        self._session: Any = None
        self._session_lock = threading.Lock()
        self.name = "engine"

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.header["profiles"])

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        tensor = self._io.get(name)
        return TensorIOMode(tensor["mode"]) if tensor else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self._io[name]["dtype"])

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._io[name]["shape"]) if name in self._io else Dims()

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if self.get_tensor_mode(name) != TensorIOMode.INPUT:
            raise RuntimeError(f"get_tensor_profile_shape: {name!r} is not an input tensor")
        shapes = self.header["profiles"][profile_index].get(name)
        return [Dims(s) for s in shapes] if shapes else []

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext | None:
        return IExecutionContext(self)

    def serialize(self) -> IHostMemory:
        return IHostMemory(pack_plan(self.header, self.onnx_bytes))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The network on ``feeds``: the ONNX graph it was built from, through ONNX Runtime."""
        with self._session_lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.log_severity_level = 3
                self._session = ort.InferenceSession(self.onnx_bytes, options,
                                                     providers=["CPUExecutionProvider"])
        names = [t["name"] for t in self.header["io"] if t["mode"] == TensorIOMode.OUTPUT]
        return dict(zip(names, self._session.run(names, feeds), strict=True))

    def output_shape(self, name: str, inputs: dict[str, Dims]) -> Dims:
        """An output's shape given the input shapes (dims named alike are equal)."""
        sizes = {}
        for input_name, shape in inputs.items():
            for dim_name, size in zip(self._io[input_name]["dims"], shape, strict=True):
                if dim_name:
                    sizes[dim_name] = size
        tensor = self._io[name]
        return Dims(size if size >= 0 else sizes.get(dim, -1)
                    for size, dim in zip(tensor["shape"], tensor["dims"], strict=True))


class IExecutionContext:
    """One context: not to be used by two threads at once, nor by a second thread while the first
    one's work is still queued (both are data races on the real thing)."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes: dict[str, Dims] = {}
        self._addresses: dict[str, int] = {}
        self._busy = threading.Lock()
        self._pending_owner: int | None = None
        self.active_optimization_profile = 0
        self._scratch = None
        if cuda_side.is_double():
            scratch = state().allocate_device(CONTEXT_SCRATCH)
            if scratch is None:
                raise MemoryError("TensorRT double: out of device memory for a context")
            self._scratch = scratch
            weakref.finalize(self, state().free, scratch.ptr, False)
        state().count("contexts")

    # -- shapes and addresses ----------------------------------------------------------------------
    def set_input_shape(self, name: str, shape: Any) -> bool:
        with self._use("set_input_shape"):
            engine = self.engine
            if engine.get_tensor_mode(name) != TensorIOMode.INPUT:
                log_error(None, f"IExecutionContext::setInputShape: {name!r} is not an input")
                return False
            shape = Dims(shape)
            low, _, high = engine.get_tensor_profile_shape(
                name, self.active_optimization_profile) or [engine.get_tensor_shape(name)] * 3
            fits = len(shape) == len(low) and all(
                lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True))
            if not fits:
                log_error(None, f"IExecutionContext::setInputShape: Error Code 3: API Usage Error "
                          f"(dimensions {tuple(shape)} of {name} are outside the optimization "
                          f"profile [{tuple(low)}, {tuple(high)}])")
                return False
            self._shapes[name] = shape
            return True

    def get_tensor_shape(self, name: str) -> Dims:
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self._shapes.get(name, self.engine.get_tensor_shape(name))
        return self.engine.output_shape(name, self._shapes)

    @property
    def all_input_dimensions_specified(self) -> bool:
        return not self.infer_shapes()

    def infer_shapes(self) -> list[str]:
        return [n for n in self.engine._names
                if self.engine.get_tensor_mode(n) == TensorIOMode.INPUT and n not in self._shapes]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        with self._use("set_tensor_address"):
            if not isinstance(memory, int):
                raise TypeError("set_tensor_address(): incompatible function arguments "
                                f"({type(memory).__name__} is no int address)")
            if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
                log_error(None, f"IExecutionContext::setTensorAddress: no tensor named {name!r}")
                return False
            itemsize = max(1, int(self.engine.get_tensor_dtype(name).itemsize))
            if memory == 0 or memory % itemsize:
                log_error(None, f"IExecutionContext::setTensorAddress: address {memory:#x} of "
                          f"{name} is null or misaligned")
                return False
            self._addresses[name] = memory
            return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            return False
        self.active_optimization_profile = profile_index
        return True

    # -- execution ---------------------------------------------------------------------------------
    def execute_async_v3(self, stream_handle: int) -> bool:
        from _gpu_double.execute import enqueue_work

        if not isinstance(stream_handle, int):
            raise TypeError("execute_async_v3(): incompatible function arguments "
                            f"({type(stream_handle).__name__} is no int stream handle)")
        with self._use("execute_async_v3"):
            missing = self.infer_shapes()
            if missing:
                log_error(None, "IExecutionContext::enqueueV3: Error Code 3: API Usage Error "
                          f"(input shapes of {missing} have not been set)")
                return False
            unset = [n for n in self.engine._names if not self._addresses.get(n)]
            if unset:
                log_error(None, "IExecutionContext::enqueueV3: Error Code 3: API Usage Error "
                          f"(tensor addresses of {unset} have not been set)")
                return False
            return enqueue_work(self, stream_handle)

    def _use(self, what: str) -> _Use:
        return _Use(self, what)


class _Use:
    """Guards one context call against concurrent or interleaved use from another thread."""

    def __init__(self, context: IExecutionContext, what: str) -> None:
        self.context, self.what = context, what

    def __enter__(self) -> None:
        context = self.context
        if not context._busy.acquire(blocking=False):
            raise state().violate(f"{self.what}: an execution context used by two threads at "
                                  "once")
        owner = context._pending_owner
        if owner is not None and owner != threading.get_ident():
            context._busy.release()
            raise state().violate(f"{self.what}: another thread uses an execution context whose "
                                  "enqueued work has not finished (not synchronized)")

    def __exit__(self, *exc: object) -> None:
        self.context._busy.release()
