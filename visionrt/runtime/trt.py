"""Native TensorRT backend (TensorRT 10 / 11 API, name-based tensor I/O, ``execute_async_v3``).

One engine per model and a bounded pool of execution slots (context, non-blocking stream, device
and pinned host buffers sized once for the largest batch). A call borrows an idle slot, or creates
one while fewer than :data:`MAX_CONTEXTS` exist, or waits: GPU memory does not grow with the
number of calling threads, and an execution context is never used by two threads at once. Per
call: copy into pinned memory, set the input shape when it changed, async copy in, execute (or
replay the CUDA graph captured for this batch size), async copy out, synchronise. ``close()``
waits for the calls in flight before it frees anything.

Before any TensorRT object exists: :func:`visionrt.runtime._cuda.require_tensorrt` finds a CUDA
device (a TensorRT Runtime without one crashes on deserialize), then :func:`read_engine` compares
the manifest's TensorRT version and compute capability with this machine and checks the sha256 of
the very bytes that will be deserialized. A ``None`` from ``deserialize_cuda_engine`` becomes
IncompatibleEngineError.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
from visionrt.runtime.base import (
    BackendBase,
    BackendConfig,
    BackendInfo,
    CallGuard,
    bucket_sizes,
    check_io,
)

log = logging.getLogger(__name__)

# Two contexts let one call's copies overlap another's kernels; more only add memory.
MAX_CONTEXTS = 2
REBUILD = "rebuild it on this machine with `visionrt export RUN --engine` (or ship the ONNX files)"

_loggers: dict[int, Any] = {}
_loggers_lock = threading.Lock()


def load(path: Path, artifact: Artifact | None, config: BackendConfig) -> TensorRTBackend:
    """A serialized TensorRT engine from a bundle, on ``config.device``."""
    return TensorRTBackend(path, artifact, config)


def _trt_logger(trt: Any) -> Any:
    # TensorRT's logger is process-wide and must outlive every runtime: one per tensorrt module.
    with _loggers_lock:
        key = id(trt)
        if key not in _loggers:
            _loggers[key] = (trt, trt.Logger(trt.Logger.WARNING))
        return _loggers[key][1]


def _version_parts(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".")[:4] if p.isdigit())


def _capability(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    parts = str(value or "").split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(
        p.isdigit() for p in parts) else None


def engine_mismatch(artifact: Artifact | None, trt_version: str,
                    device: _cuda.DeviceInfo) -> str | None:
    """Why the engine ``artifact`` cannot run with this TensorRT on ``device`` (None: it can).

    The manifest's ``tensorrt`` record (written by the exporter) holds the ``version`` of
    TensorRT that built the engine, the ``compute_capability`` and name (``gpu``) of the GPU it
    was built on. TensorRT engines run only on the same version and GPU architecture.
    """
    record = (artifact.tensorrt or {}) if artifact is not None else {}
    if not record.get("version") or _capability(record.get("compute_capability")) is None:
        return ("the manifest has no TensorRT record (version, compute capability), so the engine "
                "cannot be checked before deserializing")
    built, have = _version_parts(record["version"]), _version_parts(trt_version)
    common = min(len(built), len(have), 4)
    if common < 3 or built[:common] != have[:common]:
        return f"it was built with TensorRT {record['version']} but TensorRT {trt_version} is " \
               "installed"
    wanted = _capability(record["compute_capability"])
    if wanted != device.compute_capability:
        return (f"it was built for compute capability {wanted[0]}.{wanted[1]} "
                f"({record.get('gpu') or 'another GPU'}) but cuda:{device.index} is {device.name} "
                f"with {device.capability}")
    return None


def read_engine(path: Path, artifact: Artifact | None, trt_version: str,
                device: _cuda.DeviceInfo) -> bytes:
    """The engine's bytes, after the compatibility and digest checks (the one place for both).

    Raises:
        IncompatibleEngineError: no record, another TensorRT version or GPU architecture.
        ModelTamperedError: the bytes do not match the manifest's sha256.
    """
    problem = engine_mismatch(artifact, trt_version, device)
    if problem:
        raise IncompatibleEngineError(f"{path}: {problem}", source=str(path), hint=REBUILD)
    plan = path.read_bytes()
    digest = hashlib.sha256(plan).hexdigest()
    if digest != artifact.sha256:
        # The bytes that will be deserialized, not the file as it was a moment ago (S6/A9).
        raise ModelTamperedError(f"{path}: sha256 does not match the manifest; refusing to "
                                 "deserialize", source=str(path), expected=artifact.sha256,
                                 actual=digest, hint="rebuild the engine yourself")
    return plan


@dataclass
class _Slot:
    """What one call needs on the GPU: lent to one thread at a time."""

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
    """A deserialized engine with a bounded pool of execution slots."""

    name = "tensorrt"

    def __init__(self, path: Path, artifact: Artifact | None, config: BackendConfig) -> None:
        if not config.is_cuda:
            raise BackendUnavailableError("TensorRT needs --device cuda", source=config.device)
        self.path, self.artifact, self.config = path, artifact, config
        trt = self.trt = _cuda.require_tensorrt(config.device_index)  # probes the GPU first
        self.device = _cuda.device_info(config.device_index)
        self.cuda = _cuda.get_api()
        plan = read_engine(path, artifact, trt.__version__, self.device)
        self.cuda.activate(self.device.index)
        self._runtime = trt.Runtime(_trt_logger(trt))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise IncompatibleEngineError(
                f"{path}: TensorRT {trt.__version__} could not deserialize the engine (see the "
                "TensorRT log above)", source=str(path), hint=REBUILD)
        self.inputs, self.outputs = self._io_tensors()
        check_io(artifact, self.inputs, self.outputs, str(path))
        self.max_batch = min(config.max_batch, self._profile_max())
        self.batch_buckets = bucket_sizes(self.max_batch)
        self._calls = CallGuard(self.name)
        self._idle: list[_Slot] = []
        self._slots: list[_Slot] = []
        self._pool = threading.Condition()
        self._creating = 0

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

    # -- the slot pool -----------------------------------------------------------------------------
    @contextmanager
    def _slot(self) -> Iterator[_Slot]:
        """Borrow a slot: an idle one, a new one while fewer than MAX_CONTEXTS exist, or wait."""
        with self._pool:
            while not self._idle and len(self._slots) + self._creating >= MAX_CONTEXTS:
                self._pool.wait()
            slot = self._idle.pop() if self._idle else None
            if slot is None:
                self._creating += 1
        if slot is None:
            try:
                slot = self._new_slot()
            finally:
                with self._pool:
                    self._creating -= 1
                    if slot is not None:
                        self._slots.append(slot)
                    self._pool.notify()
        try:
            yield slot
        finally:
            with self._pool:
                self._idle.append(slot)
                self._pool.notify()

    def _new_slot(self) -> _Slot:
        context = self.engine.create_execution_context()
        if context is None:
            raise ResourceExhaustedError("TensorRT could not create an execution context "
                                         "(GPU memory?)", source=str(self.path))
        stream = self.cuda.create_stream()
        device_in, host_in = self._allocate(self.inputs[0])
        device_out, host_out = self._allocate(self.outputs[0])
        slot = _Slot(context, stream, self.cuda.stream_handle(stream), device_in, device_out,
                     host_in, host_out)
        for tensor, buffer in ((self.inputs[0], device_in), (self.outputs[0], device_out)):
            if not context.set_tensor_address(tensor.name, buffer.ptr):
                raise InferenceError(f"TensorRT refused the address of {tensor.name!r}",
                                     source=str(self.path))
        return slot

    def _allocate(self, tensor: TensorInfo) -> tuple[_cuda.DeviceBuffer, _cuda.HostBuffer]:
        """Device + pinned host buffer for ``max_batch`` rows of ``tensor`` (allocated once)."""
        nbytes = self.max_batch * int(np.prod(tensor.shape[1:])) * np.dtype(tensor.dtype).itemsize
        return self.cuda.alloc_device(nbytes), self.cuda.alloc_host(nbytes)

    # -- inference ---------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; see :class:`visionrt.runtime.base.Backend`."""
        self._check_batch(batch)
        with self._calls.call():
            self.cuda.activate(self.device.index)
            with self._slot() as slot:
                return self._run(slot, batch)

    def _run(self, slot: _Slot, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
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
                     "compute_capability": self.device.capability,
                     "cuda_graphs": self.config.cuda_graphs, "contexts": len(self._slots),
                     "max_contexts": MAX_CONTEXTS})

    def close(self) -> None:
        """Wait for the calls in flight, then free every slot, the engine and the runtime."""
        if not self._calls.close():
            return
        self._closed = True
        self.cuda.activate(self.device.index)
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
        self._idle.clear()
        self.engine = None
        self._runtime = None
