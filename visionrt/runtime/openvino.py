"""OpenVINO backend (CPU): latency or throughput hint, async infer requests, explicit precision.

OpenVINO's CPU plugin runs fp32 graphs in bf16 by default on CPUs with AVX512-BF16/AMX (such as
the development machines). visionrt's ``fp32`` therefore sets ``INFERENCE_PRECISION_HINT=f32``;
``bf16`` (and ``fp16``) are precisions a user asks for explicitly, and the precision that really
executes is read back from the compiled model and reported, or the load fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from visionrt._optional import require
from visionrt.bundle import Artifact, TensorInfo
from visionrt.errors import BackendUnavailableError, InferenceError, ModelFileError
from visionrt.runtime.base import (
    BackendBase,
    BackendConfig,
    BackendInfo,
    cache_root,
    check_io,
    dtype_name,
)

log = logging.getLogger(__name__)

# visionrt precision -> OpenVINO inference precision. int8 QDQ graphs run their quantized ops in
# int8 whatever the hint; the hint decides the remaining ops, so it is f32 to match ONNX Runtime.
_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}
_EXECUTED = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}

# Batch sizes get a static-shape compiled model of their own, compiled on first use: the CPU plugin
# runs a static graph faster and with less memory than the dynamic-batch one (paired A/B in
# benchmarks/cpu_peers.py). Specialising on first use rather than on a repeat also means the
# dynamic model never allocates for that size. Each compile costs time (less from the compile
# cache), so at most ``_MAX_STATIC`` sizes per backend; other sizes run on the dynamic model.
_MAX_STATIC = 4

_core_lock = threading.Lock()
_core: Any = None


def load(path: Path, artifact: Artifact | None, config: BackendConfig) -> OpenVinoBackend:
    """OpenVINO on the CPU."""
    return OpenVinoBackend(path, artifact, config)


def cpu_capabilities() -> frozenset[str]:
    """What this CPU offers OpenVINO: the CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``FP32``,
    ``BF16``, ``FP16``, ``INT8``, ...) plus ``VNNI`` when the CPU has int8 dot-product instructions.

    The one place visionrt asks what the CPU can execute (tests replace it to reach every
    branch on any machine); :func:`precision_gap` and :func:`int8_note` read it.
    """
    capabilities = set(_shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if _cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        capabilities.add("VNNI")
    return frozenset(capabilities)


def precision_gap(precision: str) -> str | None:
    """Why OpenVINO cannot execute ``precision`` on this CPU as asked, or None when it can.

    The CPU plugin silently runs an f16 hint in bf16 (or f32) on CPUs without AVX512-FP16/AMX-FP16,
    and a bf16 hint in f32 on CPUs without AVX512-BF16/AMX.
    """
    capabilities = cpu_capabilities()
    if precision == "fp16" and "FP16" not in capabilities:
        return f"this CPU executes f16 as {'bf16' if 'BF16' in capabilities else 'f32'}"
    if precision == "bf16" and "BF16" not in capabilities:
        return "this CPU executes bf16 as f32"
    return None


def int8_note() -> str | None:
    """A note for int8 on CPUs without VNNI: it executes, on slower instructions whose 16-bit
    intermediate sums can saturate, so its parity check is the one that counts."""
    if "VNNI" in cpu_capabilities():
        return None
    return "int8 runs without VNNI on this CPU (slower; u8*s8 products may saturate)"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known, so no VNNI claimed
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _shared_core() -> Any:
    global _core
    with _core_lock:
        if _core is None:
            _core = require("openvino").Core()
        return _core


class OpenVinoBackend(BackendBase):
    """One dynamic-batch compiled model plus static-shape ones for the batch sizes in use (see
    ``_MAX_STATIC``). Latency mode runs one infer request per calling thread; throughput mode
    splits each batch across ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` async requests (one per stream)
    of the compiled model that fits each chunk."""

    name = "openvino"

    def __init__(self, path: Path, artifact: Artifact | None, config: BackendConfig) -> None:
        ov = require("openvino")
        if config.is_cuda:
            raise BackendUnavailableError("visionrt runs OpenVINO on the CPU only",
                                          source=config.device, hint="use --device cpu")
        gap = precision_gap(config.precision)
        if gap is not None:
            raise BackendUnavailableError(
                f"OpenVINO cannot execute {config.precision} on this CPU ({gap})",
                source=str(path), hint="use --precision fp32")
        self.path, self.artifact, self.config = path, artifact, config
        self.max_batch = config.max_batch
        self.cpu_note = int8_note() if config.precision == "int8" else None
        self._cache_dir = _writable_cache(config)
        blobs = _blobs(self._cache_dir)
        self.compiled = self._compile(lambda model: self._bound_batch(ov, model))
        # A blob written (new, or rewritten over a corrupt one, which OpenVINO recompiles) = miss.
        self.compile_cache = ("off" if self._cache_dir is None
                              else "miss" if _blobs(self._cache_dir) != blobs else "hit")
        self.executed_hint = _HINTS[config.precision]
        self.inputs = tuple(_tensor(port) for port in self.compiled.inputs)
        self.outputs = tuple(_tensor(port) for port in self.compiled.outputs)
        check_io(artifact, self.inputs, self.outputs, str(path))
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._local = threading.local()
        self._lock = threading.RLock()  # compiles and the async batch in flight
        self._static: dict[int, Any] = {}  # batch size -> static compiled model, or None (failed)
        self._queues: dict[int, Any] = {}  # throughput mode: compiled-model key -> request queue
        self._results: list[np.ndarray | None] = []  # the async batch in flight (under _lock)

    def _compile(self, reshape: Any) -> Any:
        """Read the model, ``reshape`` it in place, compile it and check the executed precision.

        Raises:
            ModelFileError: OpenVINO cannot read or compile the file.
            BackendUnavailableError: the compiled model runs another precision than asked.
        """
        path, hint = self.path, _HINTS[self.config.precision]
        try:
            model = _shared_core().read_model(str(path))
            reshape(model)
            compiled = _shared_core().compile_model(model, "CPU", self._properties(hint))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own text
            raise ModelFileError(f"{path}: OpenVINO cannot load it ({exc})", source=str(path),
                                 hint="re-export the model or use --backend onnxruntime") from exc
        executed = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if executed != hint:
            raise BackendUnavailableError(
                f"OpenVINO was asked to run {self.config.precision} (hint {hint}) but compiled "
                f"{path.name} for {executed}: this CPU cannot execute {self.config.precision}",
                source=str(path), expected=hint, actual=executed,
                hint="use --precision fp32")
        return compiled

    def _compiled_for(self, n: int) -> tuple[int, Any]:
        """(key, compiled model) for a batch of ``n``: the static-shape model of ``n`` (compiled
        here on first use, see ``_MAX_STATIC``), else ``(0, dynamic)``.
        A static compile that fails logs and leaves that size on the dynamic model for good."""
        shape = self.inputs[0].shape
        if shape[0] != "batch" or not all(isinstance(d, int) for d in shape[1:]):
            return 0, self.compiled
        static = self._static.get(n)
        if static is None and n not in self._static:
            with self._lock:
                if n not in self._static and len(self._static) < _MAX_STATIC:
                    self._static[n] = self._compile_static(n)
                static = self._static.get(n)
        return (n, static) if static is not None else (0, self.compiled)

    def _compile_static(self, n: int) -> Any:
        name, shape = self.inputs[0].name, [n, *self.inputs[0].shape[1:]]

        def reshape(model: Any) -> None:
            model.reshape({name: shape})

        try:
            return self._compile(reshape)
        except (ModelFileError, BackendUnavailableError) as exc:
            log.warning("OpenVINO static batch-%d model unavailable, using the dynamic one: %s",
                        n, exc)
            return None

    def _properties(self, hint: str) -> dict[str, Any]:
        properties = {
            "PERFORMANCE_HINT": self.config.performance.upper(),
            "INFERENCE_PRECISION_HINT": hint,
        }
        if self.config.threads:
            properties["INFERENCE_NUM_THREADS"] = self.config.threads
        if self._cache_dir is not None:
            properties["CACHE_DIR"] = str(self._cache_dir)
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
            if self.config.performance != "throughput" or batch.shape[0] == 1:
                return self._infer_sync(batch)
            return self._infer_async(batch)
        except Exception as exc:
            raise InferenceError(f"OpenVINO failed on a batch of {batch.shape[0]} "
                                 f"({type(exc).__name__}: {exc})", source=str(self.path)) from exc

    def _infer_sync(self, batch: np.ndarray) -> np.ndarray:
        key, compiled = self._compiled_for(batch.shape[0])
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(key)
        if request is None:  # one infer request per calling thread: requests are not reentrant
            request = requests[key] = compiled.create_infer_request()
        # share_inputs=True (what CompiledModel.__call__ does): no copy of the batch into the
        # request; safe because infer() is synchronous. Saves ~45 us per call plus the batch copy
        # (benchmarks/README.md, bench engineer).
        result = request.infer({0: batch}, share_inputs=True)
        return np.array(result[0], copy=True)

    def _infer_async(self, batch: np.ndarray) -> np.ndarray:
        chunks = [np.ascontiguousarray(c)  # held here until wait_all(): shared, never copied
                  for c in np.array_split(batch, min(self.requests, batch.shape[0]))]
        with self._lock:  # one batch at a time: the queues' wait_all waits for every job
            self._results = [None] * len(chunks)
            used = []
            for index, chunk in enumerate(chunks):
                queue = self._queue_for(*self._compiled_for(chunk.shape[0]))
                queue.start_async({0: chunk}, index, share_inputs=True)
                used.append(queue)
            for queue in {id(q): q for q in used}.values():
                queue.wait_all()
            results, self._results = self._results, []
        if any(r is None for r in results):
            raise InferenceError("an OpenVINO async request returned no output",
                                 source=str(self.path))
        return np.concatenate(results, axis=0)

    def _queue_for(self, key: int, compiled: Any) -> Any:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = require("openvino").AsyncInferQueue(compiled,
                                                                            self.requests)
            queue.set_callback(self._done)
        return queue

    def _done(self, request: Any, index: int) -> None:
        self._results[index] = np.array(request.get_output_tensor(0).data, copy=True)

    def info(self) -> BackendInfo:
        artifact_precision = self.artifact.precision if self.artifact else self.config.precision
        return BackendInfo(
            backend="openvino", device="cpu", provider="CPU", precision=self.precision,
            artifact_precision=artifact_precision, file=self.path.name, max_batch=self.max_batch,
            details={"performance_hint": self.config.performance,
                     "inference_precision_hint": self.executed_hint,
                     "infer_requests": self.requests,
                     "compile_cache": self.compile_cache,
                     "static_batches": sorted(n for n, c in self._static.items() if c),
                     **({"cpu_note": self.cpu_note} if self.cpu_note else {})})

    def close(self) -> None:
        self._closed = True
        self._queues = {}
        self._local = threading.local()
        self._static = {}
        self.compiled = None


def _writable_cache(config: BackendConfig) -> Path | None:
    """The compiled-blob cache directory, or None when caching is off or it cannot be written
    (a read-only home directory must not stop the model from loading)."""
    if not config.compile_cache:
        return None
    directory = (config.cache_dir or cache_root()) / "openvino"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("OpenVINO compile cache off: cannot create %s (%s)", directory, exc)
        return None
    if not os.access(directory, os.W_OK | os.X_OK):
        log.warning("OpenVINO compile cache off: %s is not writable", directory)
        return None
    _prune(directory, config.cache_max_mb * 2**20)
    return directory


def _prune(directory: Path, limit: int) -> None:
    """Delete the least recently written blobs until the cache holds at most ``limit`` bytes."""
    try:
        blobs = sorted((entry.stat().st_mtime, entry.stat().st_size, entry)
                       for entry in directory.iterdir() if entry.suffix == ".blob")
        total = sum(size for _, size, _ in blobs)
        for _, size, entry in blobs:
            if total <= limit:
                break
            entry.unlink(missing_ok=True)
            total -= size
    except OSError as exc:  # another process pruning at the same time, permissions, ...
        log.warning("OpenVINO compile cache %s not pruned: %s", directory, exc)


def _blobs(directory: Path | None) -> dict[str, tuple[int, int]]:
    """name -> (mtime ns, size) of the cache's blobs."""
    if directory is None:
        return {}
    found = {}
    for entry in directory.iterdir():
        if entry.suffix == ".blob":
            with contextlib.suppress(OSError):  # pruned by another process meanwhile
                stat = entry.stat()
                found[entry.name] = (stat.st_mtime_ns, stat.st_size)
    return found


def _tensor(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else "batch" for d in port.get_partial_shape())
    return TensorInfo(name=port.get_any_name(), dtype=dtype_name(port.get_element_type()
                                                                 .to_dtype().name), shape=shape)
