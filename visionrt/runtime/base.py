"""The backend protocol every inference engine implements, and the name -> loader table.

A backend wraps one model file on one device and does nothing else: it takes a batch that already
has the dtype/layout of the graph input and returns the raw output (logits). Decoding, batching,
padding and top-k live in :mod:`visionrt.runtime.classifier`. Backend modules import their heavy
package (onnxruntime, openvino, tensorrt) only when loaded, through ``visionrt._optional``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from visionrt import _optional
from visionrt.bundle import PRECISIONS, Artifact, TensorInfo
from visionrt.errors import BackendUnavailableError, ConfigError, InputValidationError

log = logging.getLogger(__name__)

PERFORMANCE_HINTS = ("latency", "throughput")
DEFAULT_CACHE_MAX_MB = 2048

# backend name -> (module, loader function). The loader has the signature
# ``load(path: Path, artifact: Artifact, config: BackendConfig) -> Backend``.
LOADERS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("visionrt.runtime.ort", "load"),
    "onnxruntime-trt": ("visionrt.runtime.ort", "load_tensorrt_ep"),
    "openvino": ("visionrt.runtime.openvino", "load"),
    "tensorrt": ("visionrt.runtime.trt", "load"),
}
BACKENDS = tuple(LOADERS)


@dataclass(frozen=True)
class BackendConfig:
    """How to run one artifact; built and validated once by ``Classifier.load``.

    Attributes:
        device: ``"cpu"`` or ``"cuda:N"``.
        precision: the precision that must actually execute (``fp32``, ``fp16``, ``bf16``,
            ``int8``). Backends set it explicitly and raise when the device cannot honour it.
        max_batch: largest batch the backend is asked to run; buffers are sized for it.
        performance: ``"latency"`` (one request at a time uses every core) or ``"throughput"``
            (several parallel requests; OpenVINO streams / async infer requests).
        threads: intra-op threads on CPU; ``None`` = the physical cores available to this process.
        cuda_graphs: capture one CUDA graph per batch size (native TensorRT only).
        cache_dir: where engine and compiled-model caches are written (default
            :func:`cache_root`): ONNX Runtime's TensorRT EP engines, OpenVINO's compiled blobs.
        compile_cache: OpenVINO keeps compiled blobs in ``cache_dir / "openvino"`` so that the
            next load of the same model skips compilation, which dominates cold start.
            OpenVINO keys the blobs by model, options and version itself.
        cache_max_mb: the oldest compiled blobs are deleted above this size; OpenVINO never
            evicts, and one blob per model, precision, mode and batch shape adds up.
    """

    device: str = "cpu"
    precision: str = "fp32"
    max_batch: int = 32
    performance: str = "latency"
    threads: int | None = None
    cuda_graphs: bool = False
    cache_dir: Path | None = None
    compile_cache: bool = False
    cache_max_mb: int = DEFAULT_CACHE_MAX_MB

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {PRECISIONS}",
                              actual=self.precision, expected=PRECISIONS)
        if self.performance not in PERFORMANCE_HINTS:
            raise ConfigError(f"performance {self.performance!r} is not one of "
                              f"{PERFORMANCE_HINTS}", actual=self.performance)
        if self.max_batch < 1:
            raise ConfigError(f"max_batch = {self.max_batch} must be >= 1", actual=self.max_batch)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads = {self.threads} must be >= 1", actual=self.threads)
        if self.cache_max_mb < 0:
            raise ConfigError(f"cache_max_mb = {self.cache_max_mb} must be >= 0",
                              actual=self.cache_max_mb)
        parse_device(self.device)

    @property
    def device_index(self) -> int:
        return parse_device(self.device)[1]

    @property
    def is_cuda(self) -> bool:
        return parse_device(self.device)[0] == "cuda"


@dataclass(frozen=True)
class BackendInfo:
    """What a backend really runs: reported by ``Classifier.info()`` and the benchmark.

    ``precision`` is the precision that executes (read back from the engine where the engine can
    say, e.g. OpenVINO's ``INFERENCE_PRECISION_HINT``); ``artifact_precision`` is the file's.
    """

    backend: str
    device: str
    provider: str
    precision: str
    artifact_precision: str
    file: str
    max_batch: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "provider": self.provider,
                "precision": self.precision, "artifact_precision": self.artifact_precision,
                "file": self.file, "max_batch": self.max_batch, **self.details}


@runtime_checkable
class Backend(Protocol):
    """One loaded model on one device."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch: int
    # Batch sizes the backend prefers (e.g. one CUDA graph / cuDNN plan each); ``None`` means
    # any size up to max_batch runs as it is.
    batch_buckets: tuple[int, ...] | None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N <= max_batch) in the graph's input dtype/layout; return the output."""
        ...

    def info(self) -> BackendInfo: ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


class BackendBase:
    """Shared plumbing: context manager, closed-state check and input validation."""

    name = "base"
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    max_batch = 1
    batch_buckets: tuple[int, ...] | None = None
    _closed = False

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            from visionrt.errors import RuntimeClosedError

            raise RuntimeClosedError(f"{self.name} backend was closed",
                                     hint="load the model again")

    def _check_batch(self, batch: np.ndarray) -> None:
        check_batch(batch, self.inputs[0], self.max_batch)


class CallGuard:
    """Counts a backend's calls in flight, so ``close()`` frees nothing another thread still uses.

    ``call()`` raises RuntimeClosedError once the backend is closing; ``close()`` waits for the
    calls in flight to finish and returns True once (False when already closed).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._active = 0
        self._closed = False
        self._changed = threading.Condition()

    @contextmanager
    def call(self) -> Iterator[None]:
        with self._changed:
            if self._closed:
                from visionrt.errors import RuntimeClosedError

                raise RuntimeClosedError(f"{self.name} backend was closed",
                                         hint="load the model again")
            self._active += 1
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def close(self) -> bool:
        with self._changed:
            if self._closed:
                return False
            self._closed = True
            while self._active:
                self._changed.wait()
            return True

    @property
    def closed(self) -> bool:
        return self._closed


def check_batch(batch: np.ndarray, expected: TensorInfo, max_batch: int) -> None:
    """Raise InputValidationError unless ``batch`` fits the input tensor ``expected``.

    Never hand an unchecked array to a native engine (a float64 array reaching a session has
    killed processes without a Python exception).
    """
    want_dtype = np.dtype(dtype_name(expected.dtype))
    fixed = [d if isinstance(d, int) and d > 0 else None for d in expected.shape[1:]]
    ok = (isinstance(batch, np.ndarray) and batch.dtype == want_dtype
          and batch.ndim == len(expected.shape)
          and all(f is None or f == s for f, s in zip(fixed, batch.shape[1:], strict=True))
          and 1 <= batch.shape[0] <= max_batch)
    if not ok:  # the messages are built only on failure: this runs on every inference call
        got = (f"{batch.dtype} {'x'.join(map(str, batch.shape))}"
               if isinstance(batch, np.ndarray) else type(batch).__name__)
        want = f"{want_dtype} {'x'.join(['N', *(str(d or '?') for d in fixed)])}"
        raise InputValidationError(
            f"input {expected.name!r}: expected a batch of {want} (N in 1..{max_batch}), "
            f"got {got}", source=expected.name, expected=want, actual=got)


def check_io(artifact: Artifact | None, inputs: tuple[TensorInfo, ...],
             outputs: tuple[TensorInfo, ...], file: str) -> None:
    """Compare the loaded model's I/O names/dtypes/ranks with the manifest entry (case A6).

    Non-batch dimensions fixed on both sides must be equal too (NCHW vs NHWC has equal rank).

    Raises:
        ModelFileError naming the tensor with expected and actual values.
    """
    from visionrt.errors import ModelFileError

    if artifact is None:
        return
    for kind, want, got in (("input", artifact.inputs, inputs), ("output", artifact.outputs,
                                                                  outputs)):
        if not want:
            continue  # a bare model file: nothing recorded to compare with
        want_sig = [(t.name, dtype_name(t.dtype), len(t.shape)) for t in want]
        got_sig = [(t.name, dtype_name(t.dtype), len(t.shape)) for t in got]
        if want_sig == got_sig and not all(_fixed_dims_agree(w.shape, g.shape)
                                           for w, g in zip(want, got, strict=True)):
            want_sig = [(t.name, dtype_name(t.dtype), tuple(t.shape)) for t in want]
            got_sig = [(t.name, dtype_name(t.dtype), tuple(t.shape)) for t in got]
        if want_sig != got_sig:
            raise ModelFileError(
                f"{file}: {kind}s {got_sig} do not match the manifest's {want_sig}",
                source=file, expected=want_sig, actual=got_sig,
                hint="the file does not belong to this manifest; re-export the bundle")


def _fixed_dims_agree(want: tuple, got: tuple) -> bool:
    """Dimensions after the batch dimension that are fixed integers on both sides are equal."""
    return all(w == g for w, g in zip(want[1:], got[1:], strict=True)
               if isinstance(w, int) and isinstance(g, int) and w > 0 and g > 0)


_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "bool": "bool"}


def dtype_name(name: str) -> str:
    """Normalise ``tensor(float)`` / ``float`` / ``float32`` / ``<f4``-style names to numpy names."""
    text = str(name).removeprefix("tensor(").removesuffix(")")
    text = _DTYPE_ALIASES.get(text, text)
    try:
        return np.dtype(text).name
    except TypeError:
        return text  # bfloat16 etc.: no numpy dtype


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch`` itself: 1, 2, 4, ..., max."""
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ("cpu", 0); ``"cuda"`` / ``"cuda:1"`` -> ("cuda", index)."""
    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind in ("cuda", "gpu") and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ConfigError(f"device {device!r} is not understood; use 'auto', 'cpu', 'cuda' or "
                      "'cuda:N'", actual=device)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads do not speed up GEMM-bound models)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    pairs = set()
    try:
        physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                pairs.add((physical, core))
    except OSError:
        pass
    return max(1, min(allowed, len(pairs) or allowed))


def backend_unavailable_reason(name: str, device: str) -> str | None:
    """``None`` when backend ``name`` can run on ``device`` here, else why not (no side effects
    beyond importing the backend's package; never creates a CUDA context or TensorRT runtime)."""
    if name not in LOADERS:
        return f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
    kind, index = parse_device(device)
    if name == "openvino":
        if kind != "cpu":
            return "visionrt runs OpenVINO on the CPU only"
        return None if _optional.available("openvino") else \
            "openvino is not installed (pip install 'visionrt[openvino]')"
    if name.startswith("onnxruntime"):
        return _ort_unavailable_reason(name, kind, index)
    from visionrt.runtime import _cuda

    if kind != "cuda":
        missing = "" if _optional.available("tensorrt") else \
            f" (and TensorRT is not installed: {_cuda.INSTALL_TENSORRT})"
        return f"TensorRT runs on an NVIDIA GPU (--device cuda), not on {device}{missing}"
    return _cuda.tensorrt_unavailable_reason(index)


def _ort_unavailable_reason(name: str, kind: str, index: int) -> str | None:
    if not _optional.available("onnxruntime"):
        return "onnxruntime is not installed (pip install onnxruntime)"
    if kind == "cpu":
        return None if name == "onnxruntime" else "the TensorRT EP needs --device cuda"
    providers = importlib.import_module("onnxruntime").get_available_providers()
    wanted = "TensorrtExecutionProvider" if name == "onnxruntime-trt" else "CUDAExecutionProvider"
    if wanted not in providers:
        return (f"this onnxruntime build has no {wanted} (available: {', '.join(providers)}); "
                "pip install 'visionrt[gpu]'")
    from visionrt.runtime import _cuda

    return _cuda.unavailable_reason(index)


def cache_root() -> Path:
    """The default cache directory: ``visionrt`` in the user's cache folder (the XDG base
    directory, ``$XDG_CACHE_HOME`` or ``~/.cache``). ``BackendConfig.cache_dir`` overrides it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "visionrt"


def load_backend(name: str, path: Path, artifact: Artifact | None,
                 config: BackendConfig) -> Backend:
    """Load ``path`` with backend ``name`` from the loader table.

    Raises:
        BackendUnavailableError: the backend is unknown or cannot run on ``config.device`` here.
        MissingDependencyError, ModelFileError subclasses: from the backend loader.
    """
    reason = backend_unavailable_reason(name, config.device)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run on {config.device}: {reason}",
                                      source=name, hint="run `visionrt doctor` to see what works")
    module_name, function = LOADERS[name]
    loader = getattr(importlib.import_module(module_name), function)
    log.debug("loading %s with %s (%s)", path, name, config)
    return loader(Path(path), artifact, config)
