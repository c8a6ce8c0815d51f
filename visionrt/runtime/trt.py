"""Native TensorRT backend (TensorRT 10 / 11 API, name-based tensor I/O, ``execute_async_v3``).

One engine per model; each calling thread gets its own execution context, non-blocking stream and
device + pinned host buffers sized once for the largest batch (an execution context must never be
used by two threads at once). Per call: copy into pinned memory, set the input shape when it
changed, async copy in, execute (or replay the CUDA graph captured for this batch size), async copy
out, synchronise.

Order of checks before any TensorRT object exists: a CUDA device is present (a TensorRT Runtime
without one segfaults on deserialize), the engine's bytes match the manifest's sha256, and the
manifest's TensorRT version and compute capability match this machine. A ``None`` from
``deserialize_cuda_engine`` becomes IncompatibleEngineError.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionrt._optional import require
from visionrt.bundle import Artifact, TensorInfo
from visionrt.errors import (
    BackendUnavailableError,
    IncompatibleEngineError,
    InferenceError,
    InputValidationError,
    ModelTamperedError,
    ResourceExhaustedError,
)
from visionrt.runtime import _cuda
from visionrt.runtime.base import BackendBase, BackendConfig, BackendInfo, bucket_sizes, check_io

log = logging.getLogger(__name__)

_logger_lock = threading.Lock()
_logger: Any = None


def load(path: Path, artifact: Artifact | None, config: BackendConfig) -> TensorRTBackend:
    """A serialized TensorRT engine from a bundle, on ``config.device``."""
    return TensorRTBackend(path, artifact, config)


def _trt_logger(trt: Any) -> Any:
    # TensorRT's logger is process-wide and must outlive every runtime: one shared instance.
    global _logger
    with _logger_lock:
        if _logger is None:
            _logger = trt.Logger(trt.Logger.WARNING)
        return _logger


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit())


def _capability(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = str(value).replace(",", ".").strip("[]() ").replace(" ", "").split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else None


def check_engine_compatible(artifact: Artifact | None, trt_version: str,
                            device: _cuda.DeviceInfo, path: Path) -> None:
    """Compare the manifest's TensorRT record with this machine, before deserializing.

    The record (written by the exporter) holds ``version``, ``compute_capability`` and optionally
    ``gpu``, ``version_compatible`` and ``hardware_compatible``.

    Raises:
        IncompatibleEngineError: no record, another TensorRT version, or another GPU architecture.
    """
    record = (artifact.tensorrt or {}) if artifact is not None else {}
    rebuild = "rebuild it here with `visionrt export RUN --engine` (or ship the ONNX file)"
    if not record:
        raise IncompatibleEngineError(
            f"{path}: the manifest has no TensorRT record (version, compute capability), so the "
            "engine cannot be checked before deserializing", source=str(path), hint=rebuild)
    built = str(record.get("version") or record.get("trt_version") or "")
    same = (_version_tuple(built)[:1] == _version_tuple(trt_version)[:1]
            if record.get("version_compatible") else
            _version_tuple(built) == _version_tuple(trt_version))
    if not same:
        raise IncompatibleEngineError(
            f"{path} was built with TensorRT {built or '?'} but TensorRT {trt_version} is "
            "installed", source=str(path), expected=built, actual=trt_version, hint=rebuild)
    wanted = _capability(record.get("compute_capability"))
    have = device.compute_capability
    portable = bool(record.get("hardware_compatible")) and have[0] >= 8
    if wanted != have and not portable:
        gpu = record.get("gpu") or record.get("device_name") or "another GPU"
        built_for = ".".join(map(str, wanted)) if wanted else "an unrecorded capability"
        raise IncompatibleEngineError(
            f"{path} was built for compute capability {built_for} ({gpu}) but cuda:{device.index} "
            f"is {device.name} with {have[0]}.{have[1]}", source=str(path), expected=wanted,
            actual=have, hint=rebuild)


@dataclass
class _Slot:
    """Execution state owned by one thread."""

    context: Any
    stream: Any
    handle: int
    device_in: _cuda.DeviceBuffer
    device_out: _cuda.DeviceBuffer
    host_in: _cuda.HostBuffer
    host_out: _cuda.HostBuffer
    batch: int = 0
    graphs: dict[int, Any] = field(default_factory=dict)


class TensorRTBackend(BackendBase):
    """A deserialized engine with one (context, stream, buffers) slot per calling thread."""

    name = "tensorrt"

    def __init__(self, path: Path, artifact: Artifact | None, config: BackendConfig) -> None:
        if not config.is_cuda:
            raise BackendUnavailableError("TensorRT needs --device cuda", source=config.device)
        self.path, self.artifact, self.config = path, artifact, config
        self.cuda = _cuda.get_api()
        self.device = _cuda.device_info(config.device_index)  # raises when there is no GPU
        trt = self.trt = require("tensorrt")
        check_engine_compatible(artifact, trt.__version__, self.device, path)
        plan = self._read_plan(path, artifact)
        self.cuda.activate(self.device.index)
        self._runtime = trt.Runtime(_trt_logger(trt))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise IncompatibleEngineError(
                f"{path}: TensorRT {trt.__version__} could not deserialize the engine "
                "(version tag or platform mismatch)", source=str(path),
                hint="rebuild it on this machine with `visionrt export RUN --engine`")
        self.inputs, self.outputs = self._io_tensors()
        check_io(artifact, self.inputs, self.outputs, str(path))
        self.max_batch = min(config.max_batch, self._profile_max())
        self.batch_buckets = bucket_sizes(self.max_batch)
        self._local = threading.local()
        self._slots: list[_Slot] = []
        self._slots_lock = threading.Lock()

    @staticmethod
    def _read_plan(path: Path, artifact: Artifact | None) -> bytes:
        plan = path.read_bytes()
        digest = hashlib.sha256(plan).hexdigest()
        if artifact is not None and digest != artifact.sha256:
            # Check the bytes we deserialize, not the file as it was a moment ago (S6/A9).
            raise ModelTamperedError(f"{path}: sha256 does not match the manifest; refusing to "
                                     "deserialize", source=str(path), expected=artifact.sha256,
                                     actual=digest, hint="rebuild the engine yourself")
        return plan

    def _io_tensors(self) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
        trt, engine = self.trt, self.engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            shape = tuple("batch" if d < 0 else int(d) for d in engine.get_tensor_shape(name))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(TensorInfo(name, dtype, shape))
        if len(inputs) != 1 or len(outputs) != 1:
            raise IncompatibleEngineError(
                f"{self.path}: expected one input and one output, found {len(inputs)} and "
                f"{len(outputs)}", source=str(self.path), hint="re-export the model")
        if any(not isinstance(d, int) for d in (*inputs[0].shape[1:], *outputs[0].shape[1:])):
            raise IncompatibleEngineError(f"{self.path}: only the batch dimension may be dynamic",
                                          source=str(self.path))
        return tuple(inputs), tuple(outputs)

    def _profile_max(self) -> int:
        shape = self.engine.get_tensor_shape(self.inputs[0].name)
        if shape[0] >= 0:
            return int(shape[0])
        _, _, largest = self.engine.get_tensor_profile_shape(self.inputs[0].name, 0)
        return int(largest[0])

    def _slot(self) -> _Slot:
        slot = getattr(self._local, "slot", None)
        if slot is None:
            self.cuda.activate(self.device.index)
            context = self.engine.create_execution_context()
            if context is None:
                raise ResourceExhaustedError("TensorRT could not create an execution context "
                                             "(GPU memory?)", source=str(self.path))
            stream = self.cuda.create_stream()
            device_in, host_in = self._allocate(self.inputs[0])
            device_out, host_out = self._allocate(self.outputs[0])
            slot = _Slot(context, stream, self.cuda.stream_handle(stream), device_in, device_out,
                         host_in, host_out)
            for tensor, buffer in ((self.inputs[0], slot.device_in),
                                   (self.outputs[0], slot.device_out)):
                if not context.set_tensor_address(tensor.name, buffer.ptr):
                    raise InferenceError(f"set_tensor_address({tensor.name!r}) failed")
            with self._slots_lock:
                self._slots.append(slot)
            self._local.slot = slot
        return slot

    def _allocate(self, tensor: TensorInfo) -> tuple[_cuda.DeviceBuffer, _cuda.HostBuffer]:
        """Device + pinned host buffer for ``max_batch`` rows of ``tensor`` (allocated once)."""
        nbytes = self.max_batch * int(np.prod(tensor.shape[1:])) * np.dtype(tensor.dtype).itemsize
        return self.cuda.alloc_device(nbytes), self.cuda.alloc_host(nbytes)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; see :class:`visionrt.runtime.base.Backend`."""
        self._check_open()
        self._check_batch(batch)
        slot, n = self._slot(), batch.shape[0]
        np.copyto(slot.host_in.view(batch.dtype, batch.shape), batch)
        if slot.batch != n:
            if not slot.context.set_input_shape(self.inputs[0].name, batch.shape):
                raise InputValidationError(f"TensorRT rejected input shape {batch.shape} "
                                           f"(profile allows 1..{self.max_batch})")
            slot.batch = n
        self.cuda.copy_to_device(slot.device_in, slot.host_in, batch.nbytes, slot.stream)
        self._execute(slot, n)
        out = self.outputs[0]
        shape = (n, *out.shape[1:])
        nbytes = int(np.prod(shape)) * np.dtype(out.dtype).itemsize
        self.cuda.copy_to_host(slot.host_out, slot.device_out, nbytes, slot.stream)
        self.cuda.synchronize(slot.stream)
        return slot.host_out.view(np.dtype(out.dtype), shape).copy()

    def _execute(self, slot: _Slot, n: int) -> None:
        if self.config.cuda_graphs:
            if n not in slot.graphs:
                slot.graphs[n] = self._capture(slot)
            if slot.graphs[n] is not None:
                self.cuda.launch_graph(slot.graphs[n], slot.stream)
                return
        if not slot.context.execute_async_v3(slot.handle):
            raise InferenceError(f"TensorRT execute_async_v3 failed on a batch of {n}",
                                 source=str(self.path))

    def _capture(self, slot: _Slot) -> Any | None:
        # One plain run first (lazy initialisation must not end up in the graph), then capture.
        # A graph freezes shapes and addresses: one per batch size, buffers never move.
        if not slot.context.execute_async_v3(slot.handle):
            raise InferenceError("TensorRT execute_async_v3 failed", source=str(self.path))
        self.cuda.synchronize(slot.stream)
        graph = self.cuda.capture_graph(slot.stream,
                                        lambda: slot.context.execute_async_v3(slot.handle))
        if graph is None:
            log.warning("%s: engine cannot be captured in a CUDA graph; running without",
                        self.path.name)
        return graph

    def info(self) -> BackendInfo:
        precision = self.artifact.precision if self.artifact else self.config.precision
        return BackendInfo(
            backend="tensorrt", device=self.config.device, provider=f"TensorRT "
            f"{self.trt.__version__}", precision=precision, artifact_precision=precision,
            file=self.path.name, max_batch=self.max_batch,
            details={"gpu": self.device.name, "cuda": self.cuda.name,
                     "compute_capability": ".".join(map(str, self.device.compute_capability)),
                     "cuda_graphs": self.config.cuda_graphs, "contexts": len(self._slots)})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.cuda.activate(self.device.index)
        with self._slots_lock:
            for slot in self._slots:
                for graph in slot.graphs.values():
                    if graph is not None:
                        self.cuda.destroy_graph(graph)
                self.cuda.synchronize(slot.stream)
                slot.context = None
                self.cuda.destroy_stream(slot.stream)
                self.cuda.free_device(slot.device_in)
                self.cuda.free_device(slot.device_out)
                self.cuda.free_host(slot.host_in)
                self.cuda.free_host(slot.host_out)
            self._slots.clear()
        self.engine = None
        self._runtime = None
