"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

ONNX Runtime falls back to the CPU with nothing but a log line when a GPU provider's libraries do
not load, so after creating the session we compare ``get_providers()`` with the request and raise
ProviderUnavailableError instead of running on the CPU without telling anyone. On the GPU, inputs
and outputs go through IO binding into device buffers allocated once per batch size.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from visionrt._optional import require
from visionrt.bundle import Artifact, TensorInfo
from visionrt.errors import (
    BackendUnavailableError,
    InferenceError,
    ModelFileError,
    ProviderUnavailableError,
    RuntimeClosedError,
)
from visionrt.runtime.base import (
    BackendBase,
    BackendConfig,
    BackendInfo,
    CallGuard,
    bucket_sizes,
    cache_root,
    check_io,
    dtype_name,
    physical_cores,
)

log = logging.getLogger(__name__)

_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def load(path: Path, artifact: Artifact | None, config: BackendConfig) -> OrtBackend:
    """ONNX Runtime on the CPU, or on the CUDA provider when ``config.device`` is ``cuda:N``."""
    return OrtBackend(path, artifact, config, provider="cuda" if config.is_cuda else "cpu")


def load_tensorrt_ep(path: Path, artifact: Artifact | None, config: BackendConfig) -> OrtBackend:
    """ONNX Runtime with its TensorRT execution provider (engines built and cached on first load)."""
    return OrtBackend(path, artifact, config, provider="tensorrt")


class OrtBackend(BackendBase):
    """One ``InferenceSession``; ``run`` is thread-safe, GPU IO binding is serialised by a lock."""

    name = "onnxruntime"

    def __init__(self, path: Path, artifact: Artifact | None, config: BackendConfig,
                 provider: str = "cpu") -> None:
        ort = require("onnxruntime")
        if config.precision == "bf16":
            raise BackendUnavailableError(
                "onnxruntime cannot execute bf16 on this device", source=str(path),
                hint="use --backend openvino for bf16 on CPUs with AVX512-BF16/AMX")
        self.path, self.artifact, self.config, self.provider = path, artifact, config, provider
        self.max_batch = config.max_batch
        self.threads = config.threads or physical_cores()
        requested = self._providers(artifact)
        if provider != "cpu":
            _preload_cuda_libraries(ort)
        try:
            self.session = ort.InferenceSession(str(path), self._session_options(ort),
                                                providers=requested)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ModelFileError(f"{path}: onnxruntime cannot load it ({exc})", source=str(path),
                                 hint="re-export the model or check `visionrt doctor`") from exc
        self._check_provider(ort, requested)
        self.providers = tuple(self.session.get_providers())
        self.inputs = tuple(_tensor(t) for t in self.session.get_inputs())
        self.outputs = tuple(_tensor(t) for t in self.session.get_outputs())
        check_io(artifact, self.inputs, self.outputs, str(path))
        self._input, self._output = self.inputs[0].name, self.outputs[0].name
        self.batch_buckets = bucket_sizes(self.max_batch) if provider != "cpu" else None
        self._lock = threading.Lock()
        self._bound: dict[int, tuple[Any, Any, Any]] = {}
        self._calls = CallGuard(self.name)

    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # One thread per physical core: hyper-threads share the FMA units and only add jitter.
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = True
        options.enable_cpu_mem_arena = True
        options.log_severity_level = 3
        return options

    def _providers(self, artifact: Artifact | None) -> list[Any]:
        index = self.config.device_index
        cuda = ("CUDAExecutionProvider", {
            "device_id": index,
            # Grow the arena by what is asked, not by powers of two (GPU memory creep, case D8).
            "arena_extend_strategy": "kSameAsRequested",
            "cudnn_conv_algo_search": "HEURISTIC",
        })
        if self.provider == "cpu":
            return ["CPUExecutionProvider"]
        if self.provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", self._trt_options(artifact, index)), cuda,
                "CPUExecutionProvider"]

    def _trt_options(self, artifact: Artifact | None, index: int) -> dict[str, Any]:
        cache = (self.config.cache_dir or cache_root()) / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "device_id": index,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        if artifact is not None and artifact.inputs:
            # One explicit profile 1..max_batch, so new batch sizes never trigger a rebuild.
            tensor = artifact.inputs[0]
            dims = "x".join(str(d) for d in tensor.shape[1:])
            options["trt_profile_min_shapes"] = f"{tensor.name}:1x{dims}"
            options["trt_profile_opt_shapes"] = f"{tensor.name}:{self.max_batch}x{dims}"
            options["trt_profile_max_shapes"] = f"{tensor.name}:{self.max_batch}x{dims}"
        return options

    def _check_provider(self, ort: Any, requested: list[Any]) -> None:
        wanted = requested[0] if isinstance(requested[0], str) else requested[0][0]
        active = self.session.get_providers()
        if wanted not in active:
            raise ProviderUnavailableError(
                f"{self.path}: onnxruntime did not load {wanted} (session runs on "
                f"{', '.join(active)}; this build offers {', '.join(ort.get_available_providers())})"
                "; its CUDA/cuDNN/TensorRT libraries are missing or do not match",
                source=wanted, expected=wanted, actual=active,
                hint="run `visionrt doctor`, install 'visionrt[gpu]', or use --device cpu")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; see :class:`visionrt.runtime.base.Backend`."""
        self._check_batch(batch)
        try:
            with self._calls.call():  # close() waits for this call before dropping the session
                if self.provider == "cpu":
                    return self.session.run([self._output], {self._input: batch})[0]
                return self._infer_bound(batch)
        except RuntimeClosedError:
            raise
        except Exception as exc:
            raise InferenceError(f"onnxruntime failed on a batch of {batch.shape[0]} "
                                 f"({type(exc).__name__}: {exc})", source=str(self.path)) from exc

    def _infer_bound(self, batch: np.ndarray) -> np.ndarray:
        ort = require("onnxruntime")
        with self._lock:
            n = batch.shape[0]
            if n not in self._bound:
                # Device buffers for this batch size, allocated once and reused (case D8).
                index = self.config.device_index
                x = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", index)
                width = (n, *[d if isinstance(d, int) else 1 for d in self.outputs[0].shape[1:]])
                dtype = np.dtype(self.outputs[0].dtype)
                y = ort.OrtValue.ortvalue_from_shape_and_type(width, dtype, "cuda", index)
                binding = self.session.io_binding()
                binding.bind_ortvalue_input(self._input, x)
                binding.bind_ortvalue_output(self._output, y)
                self._bound[n] = (x, y, binding)
            x, y, binding = self._bound[n]
            x.update_inplace(np.ascontiguousarray(batch))
            self.session.run_with_iobinding(binding)
            return y.numpy()

    def info(self) -> BackendInfo:
        device = self.config.device
        precision = self.artifact.precision if self.artifact else self.config.precision
        return BackendInfo(
            backend="onnxruntime-trt" if self.provider == "tensorrt" else "onnxruntime",
            device=device, provider=self.providers[0], precision=precision,
            artifact_precision=precision, file=self.path.name, max_batch=self.max_batch,
            details={"threads": self.threads, "providers": list(self.providers)})

    def close(self) -> None:
        """Wait for the calls in flight, then release the session and its device buffers."""
        if not self._calls.close():
            return
        self._closed = True
        self._bound.clear()
        self.session = None


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA/cuDNN from the nvidia-* pip wheels (torch usually does this, and the runtime never
    imports torch); without it the CUDA provider silently fails to load."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - the provider check below reports the outcome
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


def _tensor(node: Any) -> TensorInfo:
    return TensorInfo(name=node.name, dtype=dtype_name(node.type), shape=tuple(node.shape))
