"""OpenVINO backend (CPU): latency or throughput hint, async infer requests, explicit precision.

OpenVINO's CPU plugin runs fp32 graphs in bf16 by default on CPUs with AVX512-BF16/AMX (such as
the development machines). visionrt's ``fp32`` therefore sets ``INFERENCE_PRECISION_HINT=f32``;
``bf16`` (and ``fp16``) are precisions a user asks for explicitly, and the precision that really
executes is read back from the compiled model and reported, or the load fails.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from visionrt._optional import require
from visionrt.bundle import Artifact, TensorInfo
from visionrt.errors import BackendUnavailableError, InferenceError, ModelFileError
from visionrt.runtime.base import BackendBase, BackendConfig, BackendInfo, check_io, dtype_name

log = logging.getLogger(__name__)

# visionrt precision -> OpenVINO inference precision. int8 QDQ graphs run their quantized ops in
# int8 whatever the hint; the hint decides the remaining ops, so it is f32 to match ONNX Runtime.
_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}
_EXECUTED = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}

_core_lock = threading.Lock()
_core: Any = None


def load(path: Path, artifact: Artifact | None, config: BackendConfig) -> OpenVinoBackend:
    """OpenVINO on the CPU."""
    return OpenVinoBackend(path, artifact, config)


def _shared_core() -> Any:
    global _core
    with _core_lock:
        if _core is None:
            _core = require("openvino").Core()
        return _core


class OpenVinoBackend(BackendBase):
    """One compiled model; latency mode uses one infer request per thread, throughput mode splits
    each batch across ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` async requests (one per stream)."""

    name = "openvino"

    def __init__(self, path: Path, artifact: Artifact | None, config: BackendConfig) -> None:
        ov = require("openvino")
        if config.is_cuda:
            raise BackendUnavailableError("visionrt runs OpenVINO on the CPU only",
                                          source=config.device, hint="use device='cpu'")
        self.path, self.artifact, self.config = path, artifact, config
        self.max_batch = config.max_batch
        hint = _HINTS[config.precision]
        try:
            model = _shared_core().read_model(str(path))
            self._bound_batch(ov, model)
            self.compiled = _shared_core().compile_model(model, "CPU", self._properties(hint))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own text
            raise ModelFileError(f"{path}: OpenVINO cannot load it ({exc})", source=str(path),
                                 hint="re-export the model or use backend='onnxruntime'") from exc
        self.executed_hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self.executed_hint != hint:
            raise BackendUnavailableError(
                f"OpenVINO was asked to run {config.precision} (hint {hint}) but compiled "
                f"{path.name} for {self.executed_hint}", source=str(path), expected=hint,
                actual=self.executed_hint, hint="this CPU cannot execute that precision; "
                "choose precision='fp32'")
        self.inputs = tuple(_tensor(port) for port in self.compiled.inputs)
        self.outputs = tuple(_tensor(port) for port in self.compiled.outputs)
        check_io(artifact, self.inputs, self.outputs, str(path))
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._queue = (ov.AsyncInferQueue(self.compiled, self.requests)
                       if config.performance == "throughput" else None)

    def _properties(self, hint: str) -> dict[str, Any]:
        properties = {
            "PERFORMANCE_HINT": self.config.performance.upper(),
            "INFERENCE_PRECISION_HINT": hint,
        }
        if self.config.threads:
            properties["INFERENCE_NUM_THREADS"] = self.config.threads
        return properties

    def _bound_batch(self, ov: Any, model: Any) -> None:
        # A bounded batch range lets the CPU plugin plan memory once instead of per new shape.
        port = model.inputs[0]
        shape = port.get_partial_shape()
        if shape.rank.is_static and shape[0].is_dynamic:
            dims = [ov.Dimension(1, self.max_batch), *list(shape)[1:]]
            model.reshape({port.get_any_name(): ov.PartialShape(dims)})

    @property
    def precision(self) -> str:
        """The precision that executes (int8 graphs: int8, the rest in the read-back hint)."""
        if self.config.precision == "int8":
            return "int8"
        return _EXECUTED.get(self.executed_hint, self.executed_hint)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; see :class:`visionrt.runtime.base.Backend`."""
        self._check_open()
        self._check_batch(batch)
        try:
            if self._queue is None or batch.shape[0] == 1:
                return self._infer_sync(batch)
            return self._infer_async(batch)
        except Exception as exc:
            raise InferenceError(f"OpenVINO failed on a batch of {batch.shape[0]} "
                                 f"({type(exc).__name__}: {exc})", source=str(self.path)) from exc

    def _infer_sync(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:  # one infer request per calling thread: requests are not reentrant
            request = self._local.request = self.compiled.create_infer_request()
        # share_inputs=True (what CompiledModel.__call__ does): no copy of the batch into the
        # request; safe because infer() is synchronous. Saves ~45 us per call plus the batch copy
        # (benchmarks/README.md, bench engineer).
        result = request.infer({0: batch}, share_inputs=True)
        return np.array(result[0], copy=True)

    def _infer_async(self, batch: np.ndarray) -> np.ndarray:
        chunks = [np.ascontiguousarray(c)  # held here until wait_all(): shared, never copied
                  for c in np.array_split(batch, min(self.requests, batch.shape[0]))]
        results: list[np.ndarray | None] = [None] * len(chunks)

        def done(request: Any, index: int) -> None:
            results[index] = np.array(request.get_output_tensor(0).data, copy=True)

        with self._lock:  # the queue's wait_all waits for every job: one batch at a time
            self._queue.set_callback(done)
            for index, chunk in enumerate(chunks):
                self._queue.start_async({0: chunk}, index, share_inputs=True)
            self._queue.wait_all()
        if any(r is None for r in results):
            raise InferenceError("an OpenVINO async request returned no output",
                                 source=str(self.path))
        return np.concatenate(results, axis=0)

    def info(self) -> BackendInfo:
        artifact_precision = self.artifact.precision if self.artifact else self.config.precision
        return BackendInfo(
            backend="openvino", device="cpu", provider="CPU", precision=self.precision,
            artifact_precision=artifact_precision, file=self.path.name, max_batch=self.max_batch,
            details={"performance_hint": self.config.performance,
                     "inference_precision_hint": self.executed_hint,
                     "infer_requests": self.requests})

    def close(self) -> None:
        self._closed = True
        self._queue = None
        self._local = threading.local()
        self.compiled = None


def _tensor(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else "batch" for d in port.get_partial_shape())
    return TensorInfo(name=port.get_any_name(), dtype=dtype_name(port.get_element_type()
                                                                 .to_dtype().name), shape=shape)
