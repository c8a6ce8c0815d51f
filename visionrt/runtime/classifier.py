"""Classifier: load a bundle or model file on the best backend, and classify images fast.

    clf = Classifier.load("bundle/")                    # auto backend, precision, device
    for p in clf.predict(["cat.jpg", "photos/", "*.png"], top_k=3):
        print(p.input, p.label, p.score) if p.ok else print(p.input, p.error)

Host work is decode + resize only (``visionrt.images.preprocess``, the trainer's eval transform);
normalisation lives in the exported graph. Decoding runs in a thread pool and the next batch is
decoded while the current one is on the backend. Batches above the artifact's maximum are split;
backends that prefer fixed batch sizes get zero-padded buckets; rows never influence each other, so
batched results equal one-at-a-time results.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.errors import (
    ConfigError,
    ImageDecodeError,
    InferenceError,
    InputValidationError,
    ResourceExhaustedError,
    RuntimeClosedError,
    VisionRTError,
)
from visionrt.images import preprocess, to_model_input, validate_array
from visionrt.runtime import _onnx_meta, _select
from visionrt.runtime._inputs import Item, expand_inputs
from visionrt.runtime.base import DEFAULT_CACHE_MAX_MB, Backend, BackendConfig, load_backend
from visionrt.runtime.prediction import (  # noqa: F401 - Prediction and TopK are public here
    Prediction,
    PredictionError,
    TopK,
    activate,
    to_prediction,
)
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32
DEFAULT_DECODE_TIMEOUT_S = 60.0
ERROR_MODES = ("report", "raise")


class Classifier:
    """A loaded model: ``predict`` files/images, ``predict_proba``, or call on a uint8 batch."""

    def __init__(self, backend: Backend, spec: ModelSpec, *, reason: str = "",
                 workers: int | None = None,
                 decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT_S) -> None:
        self.backend = backend
        self.spec = spec
        self.reason = reason
        self.max_batch = backend.max_batch
        self.workers = workers or max(1, min(8, os.cpu_count() or 1))
        # Seconds one image may take to decode before it is reported as failed (case D12).
        self.decode_timeout = decode_timeout
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", precision: str = "auto",
             device: str = "auto", max_batch: int | None = None, *,
             performance: str = "latency", threads: int | None = None,
             cuda_graphs: bool = False, workers: int | None = None,
             decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT_S,
             compile_cache: bool = True,
             cache_dir: str | os.PathLike | None = None,
             cache_max_mb: int = DEFAULT_CACHE_MAX_MB) -> Classifier:
        """Load a bundle directory, an ``.onnx`` file or an ``.engine``/``.plan`` in a bundle.

        Args:
            path: bundle dir; ``.onnx`` file (a bare one needs ``visionrt.spec`` metadata);
                engine file inside a bundle.
            backend: ``auto`` (fastest installed for the device: OpenVINO then ONNX Runtime on
                CPU, native TensorRT then ONNX Runtime CUDA on GPU), ``onnxruntime``,
                ``onnxruntime-trt``, ``openvino`` or ``tensorrt``.
            precision: ``auto`` = the fastest precision whose artifact is verified accurate
                (fp32 always; int8/fp16 when their parity top-1 agreement >= 0.99), or
                ``fp32``/``fp16``/``bf16``/``int8``, honoured exactly or the load fails.
            device: ``auto`` (first CUDA GPU if usable, else CPU), ``cpu``, ``cuda``, ``cuda:N``.
            max_batch: largest batch run at once (<= the artifact's max); default the artifact's.
            performance: ``latency`` or ``throughput`` (OpenVINO streams + async requests).
            threads: CPU threads; default the physical cores.
            cuda_graphs: replay one CUDA graph per batch size (native TensorRT).
            workers: image-decoding threads.
            decode_timeout: seconds an image may take to decode before it is reported as a
                failed item (None: no limit).
            compile_cache: keep OpenVINO's compiled model on disk so the next load of the same
                model skips compilation (most of a cold start); False compiles every time.
            cache_dir: cache directory (default ``~/.cache/visionrt``, or the XDG cache home);
                an unwritable one turns the cache off with a warning.
            cache_max_mb: the oldest compiled models are deleted above this size.

        Raises:
            BundleError, ModelTamperedError, UnsafeModelError, IncompatibleEngineError: the model
                files are missing, modified, unsafe or built for another machine.
            BackendUnavailableError, ProviderUnavailableError, MissingDependencyError: the
                requested backend/device cannot run here.
            ConfigError: no artifact fits the request.
        """
        source = _select.resolve_source(path)
        choice = _select.choose_for_load(source, backend, precision, device)
        file = _checked_file(source, choice, max_batch)
        config = BackendConfig(device=choice.device, precision=choice.precision,
                               max_batch=max_batch or choice.artifact.max_batch,
                               performance=performance, threads=threads, cuda_graphs=cuda_graphs,
                               compile_cache=compile_cache, cache_max_mb=cache_max_mb,
                               cache_dir=Path(cache_dir) if cache_dir is not None else None)
        artifact = choice.artifact if source.bundle is not None else None
        loaded = load_backend(choice.backend, file, artifact, config)
        _fit_static_batch(loaded)
        log.info("loaded %s on %s (%s)", file, choice.backend, choice.reason)
        return cls(loaded, source.spec, reason=choice.reason, workers=workers,
                   decode_timeout=decode_timeout)

    # -- properties --------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def info(self) -> dict[str, Any]:
        """Backend, device, provider, executed precision, file, max batch and why they were
        chosen."""
        return {**self.backend.info().to_dict(), "arch": self.spec.arch,
                "num_classes": self.spec.num_classes, "reason": self.reason}

    # -- single steps ------------------------------------------------------------------------
    def preprocess(self, source: Any) -> np.ndarray:
        """Decode and resize one image for this model: uint8 (h, w, 3)."""
        return preprocess(source, self.spec)

    def __call__(self, batch: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, classes) of a preprocessed uint8 NHWC batch of input size.

        Raises:
            InputValidationError: naming the item and what was expected.
        """
        return self._run(self._validate_batch(batch))

    def _validate_batch(self, batch: Any) -> np.ndarray:
        h, w = self.spec.input_size
        want = f"uint8 Nx{h}x{w}x3"
        if isinstance(batch, (list, tuple)):
            if not batch:
                raise InputValidationError(f"batch: expected {want}, got an empty list")
            arrays = []
            for index, array in enumerate(batch):
                array = validate_array(np.asarray(array), index)
                if array.shape[:2] != (h, w):
                    raise InputValidationError(
                        f"item {index}: expected {h}x{w}x3, got {'x'.join(map(str, array.shape))}"
                        " (use predict() for images of any size)", source=f"item {index}")
                arrays.append(array)
            return np.stack(arrays)
        if (not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4
                or batch.shape[1:] != (h, w, 3) or batch.shape[0] == 0):
            got = (f"{batch.dtype} {'x'.join(map(str, batch.shape))}"
                   if isinstance(batch, np.ndarray) else type(batch).__name__)
            raise InputValidationError(
                f"batch: expected {want} (N >= 1), got {got}; use predict() for files or "
                "images of any size", source="batch", expected=want, actual=got)
        return np.ascontiguousarray(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a validated uint8 NHWC batch: split at max_batch, pad to buckets."""
        self._check_open()
        model_input = to_model_input(batch, self.spec)
        outputs = [self._infer_chunk(model_input[start:start + self.max_batch])
                   for start in range(0, len(model_input), self.max_batch)]
        return activate(np.concatenate(outputs), self.spec)

    def _infer_chunk(self, chunk: np.ndarray, retry: bool = True) -> np.ndarray:
        """Logits of <= max_batch rows, zero-padded to the backend's bucket size. Out of device
        memory, the chunk is halved and retried once (case D9)."""
        n = len(chunk)
        size = self._bucket(n)
        padded = chunk
        if size > n:
            padded = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        try:
            return self.backend.infer(padded)[:n]
        except ResourceExhaustedError:
            if not retry or n == 1:
                raise
            log.warning("out of memory on a batch of %d; retrying as two halves", n)
            half = n // 2
            return np.concatenate([self._infer_chunk(chunk[:half], retry=False),
                                   self._infer_chunk(chunk[half:], retry=False)])

    def _bucket(self, n: int) -> int:
        buckets = self.backend.batch_buckets
        if not buckets:
            return n
        return next(b for b in buckets if b >= n)

    # -- many inputs -------------------------------------------------------------------------
    def predict(self, inputs: Any, top_k: int = 5, batch_size: int | None = None,
                errors: str = "report") -> list[Prediction | PredictionError]:
        """Classify paths, folders, globs, PIL images or uint8 HxWx3 arrays, in input order.

        Args:
            inputs: one input or a list of them (a folder expands to its images, sorted).
            top_k: how many classes to rank per input.
            batch_size: images per backend call (default min(max_batch, 32)).
            errors: ``"report"`` puts a PredictionError in place of a bad input; ``"raise"``
                raises the first error.

        Returns:
            One Prediction or PredictionError per expanded input.
        """
        if top_k < 1:
            raise ConfigError(f"top_k = {top_k} must be >= 1", actual=top_k)
        results: list[Prediction | PredictionError] = []
        for item, value in self._probabilities(inputs, batch_size, errors):
            if isinstance(value, Exception):
                results.append(PredictionError(item.name, str(value), type(value).__name__))
            else:
                results.append(to_prediction(item.name, value, self.labels, top_k))
        return results

    def predict_proba(self, inputs: Any, batch_size: int | None = None,
                      errors: str = "raise") -> np.ndarray:
        """Probabilities (N, classes) of the expanded inputs; with ``errors="report"`` a bad
        input's row is NaN."""
        rows = []
        for _, value in self._probabilities(inputs, batch_size, errors):
            rows.append(np.full(self.spec.num_classes, np.nan, np.float32)
                        if isinstance(value, Exception) else value)
        return np.stack(rows) if rows else np.zeros((0, self.spec.num_classes), np.float32)

    def _probabilities(self, inputs: Any, batch_size: int | None,
                       errors: str) -> Iterator[tuple[Item, np.ndarray | Exception]]:
        if errors not in ERROR_MODES:
            raise ConfigError(f"errors = {errors!r}; expected one of {ERROR_MODES}")
        size = batch_size or min(self.max_batch, DEFAULT_BATCH)
        if size < 1:
            raise ConfigError(f"batch_size = {size} must be >= 1", actual=size)
        for chunk, decoded in self._decoded_chunks(expand_inputs(inputs), size):
            good = [i for i, value in enumerate(decoded) if isinstance(value, np.ndarray)]
            probs: np.ndarray | Exception | None = None
            if good:
                try:
                    probs = self._run(np.stack([decoded[i] for i in good]))
                except Exception as exc:  # noqa: BLE001 - reported per item, worker goes on
                    probs = as_visionrt_error(exc)
            rows = dict(zip(good, probs, strict=True)) if isinstance(probs, np.ndarray) else {}
            for index, item in enumerate(chunk):
                value = rows.get(index, decoded[index] if index not in good else probs)
                if isinstance(value, Exception) and errors == "raise":
                    raise value
                yield item, value

    def _decoded_chunks(self, items: list[Item], size: int
                        ) -> Iterator[tuple[list[Item], list[np.ndarray | Exception]]]:
        """Yield chunks with their decoded arrays; decoding of chunk i+1 runs in the pool while
        the caller runs chunk i on the backend."""
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        pending = self._submit(chunks[0]) if chunks else []
        for index, chunk in enumerate(chunks):
            decoded = [self._collect(item, future, submitted)
                       for item, (future, submitted) in zip(chunk, pending, strict=True)]
            pending = self._submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            yield chunk, decoded

    def _submit(self, chunk: list[Item]) -> list[tuple[Future, float]]:
        with self._pool_lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="visionrt-decode")
            now = time.monotonic()
            return [(self._pool.submit(self._decode, item), now) for item in chunk]

    def _collect(self, item: Item, future: Future, submitted: float) -> np.ndarray | Exception:
        if self.decode_timeout is None:
            return future.result()
        try:
            return future.result(max(0.0, submitted + self.decode_timeout - time.monotonic()))
        except FutureTimeout:
            future.cancel()  # a decoder cannot be interrupted: the item fails, the batch goes on
            return ImageDecodeError(f"{item.name}: decoding took longer than "
                                    f"{self.decode_timeout:g} s", source=item.name,
                                    hint="check the file, or raise decode_timeout")

    def _decode(self, item: Item) -> np.ndarray | Exception:
        if item.error is not None:
            return item.error
        try:
            return preprocess(item.source, self.spec)
        except Exception as exc:  # noqa: BLE001 - one bad file never fails the batch
            return as_visionrt_error(exc, item.name)

    # -- lifecycle ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("the classifier was closed", hint="load it again")

    def close(self) -> None:
        """Release the backend and the decoding threads (idempotent)."""
        with self._pool_lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.backend.info()
        return (f"Classifier({self.spec.arch}, {len(self.labels)} classes, {info.backend} "
                f"{info.precision} on {info.device})")


def as_visionrt_error(exc: Exception, name: str | None = None) -> VisionRTError:
    if isinstance(exc, VisionRTError):
        return exc
    if name is not None:
        return ImageDecodeError(f"{name}: {type(exc).__name__}: {exc}", source=name)
    return InferenceError(f"inference failed ({type(exc).__name__}: {exc})")


def _checked_file(source: Any, choice: Any, max_batch: int | None) -> Path:
    """The chosen artifact's file, once the batch fits it, its sha256 matches the manifest and
    its ONNX external data stays inside its folder: before any backend reads a byte of it."""
    artifact = choice.artifact
    if max_batch is not None and max_batch > artifact.max_batch:
        raise ConfigError(f"max_batch = {max_batch} exceeds {artifact.file}'s maximum batch "
                          f"{artifact.max_batch}", actual=max_batch, expected=artifact.max_batch,
                          hint="omit max_batch, or re-export with a larger --max-batch")
    if source.bundle is not None and artifact.format != "tensorrt":
        file = source.bundle.verified_path(artifact)
    else:  # an engine's digest is checked by its backend on the very bytes it deserializes
        file = choice.path
    if artifact.format == "onnx":
        _onnx_meta.check_external_data(file)
    return file


def _fit_static_batch(backend: Backend) -> None:
    """A graph exported with a fixed batch N runs exactly N: pad every call to it."""
    first = backend.inputs[0].shape[0] if backend.inputs and backend.inputs[0].shape else None
    if isinstance(first, int) and first > 0:
        backend.max_batch = first
        backend.batch_buckets = (first,)
