"""From a path and (backend, precision, device) requests to one artifact on one backend.

Rules (documented in ``Classifier.load``):

* ``device="auto"``: the first CUDA device when one is visible and a GPU backend is installed,
  else the CPU.
* ``backend="auto"``: the fastest backend installed for the device and precision
  (:data:`CPU_PREFERENCE`, :data:`GPU_PREFERENCE`); the choice and its reason are in ``info()``.
* ``precision="auto"``: the fastest precision whose artifact is *verified as accurate*: fp32 always
  qualifies; fp16 and int8 qualify when their manifest parity record shows top-1 agreement with
  the PyTorch model >= :data:`AUTO_MIN_TOP1`. bf16 is never chosen automatically.
* An explicit backend, precision or device is honoured exactly or the load fails; nothing is
  silently downgraded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from visionrt.bundle import MANIFEST, Artifact, Bundle, load_bundle, sha256_file
from visionrt.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    IncompatibleEngineError,
)
from visionrt.runtime import _cuda, _onnx_meta
from visionrt.runtime.base import BACKENDS, PRECISIONS, backend_unavailable_reason, parse_device
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

AUTO_MIN_TOP1 = 0.99
BARE_MAX_BATCH = 64
ENGINE_SUFFIXES = (".engine", ".plan")

# OpenVINO is tried first on the CPU when installed: side by side it ran fp32 and int8 graphs faster
# than ONNX Runtime at batch 1 and 16 (benchmarks/cpu_peers.py measures it on any machine), it
# compiles fp16 graphs for the CPU where ONNX Runtime has no fp16 kernels (and fails loudly on CPUs
# without fp16 support), and bf16 exists only in OpenVINO.
CPU_PREFERENCE = {
    "fp32": ("openvino", "onnxruntime"),
    "int8": ("openvino", "onnxruntime"),
    "fp16": ("openvino", "onnxruntime"),
    "bf16": ("openvino",),
}
# Native TensorRT needs an engine built for this GPU; ONNX Runtime's CUDA EP runs any ONNX file.
# The TensorRT EP ("onnxruntime-trt") builds engines at load time (minutes): only on request.
GPU_PREFERENCE = ("tensorrt", "onnxruntime")
# Fastest first; auto takes the first one with a verified artifact.
AUTO_ORDER = {"cpu": ("int8", "fp32"), "cuda": ("int8", "fp16", "fp32")}
# Which artifact targets suit a backend, best first.
_TARGETS = {
    ("onnxruntime", "cpu"): ("cpu", "any", "tensorrt"),
    ("openvino", "cpu"): ("cpu", "any", "tensorrt"),
    ("onnxruntime", "cuda"): ("any", "cpu", "tensorrt"),
    ("onnxruntime-trt", "cuda"): ("tensorrt", "any"),
    ("tensorrt", "cuda"): ("tensorrt", "any"),
}


@dataclass(frozen=True)
class ModelSource:
    """What a user's path resolved to: a spec and the artifacts that may be loaded."""

    origin: Path
    spec: ModelSpec
    root: Path
    artifacts: tuple[Artifact, ...]
    bundle: Bundle | None = None
    pinned: bool = False  # the user named one file: precision "auto" means that file's


@dataclass(frozen=True)
class Choice:
    backend: str
    device: str
    precision: str
    artifact: Artifact
    path: Path
    reason: str


def resolve_source(path: str | Path) -> ModelSource:
    """A bundle directory, an ``.onnx`` file (in a bundle or bare) or an engine in a bundle.

    Raises:
        BundleError: the path does not exist or is none of those.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"model not found: {path}", source=str(path),
                          hint="pass a bundle directory, an .onnx file or an .engine file")
    if path.is_dir():
        bundle = load_bundle(path)
        return ModelSource(path, bundle.spec, path, bundle.artifacts, bundle)
    suffix = path.suffix.lower()
    manifest = path.parent / MANIFEST
    if suffix in (".onnx", *ENGINE_SUFFIXES) and manifest.is_file():
        bundle = load_bundle(path.parent)
        listed = [a for a in bundle.artifacts if a.file == path.name]
        if listed:
            return ModelSource(path, bundle.spec, path.parent, tuple(listed), bundle, pinned=True)
    if suffix in ENGINE_SUFFIXES:
        raise BundleError(
            f"{path}: a TensorRT engine carries neither its ModelSpec nor its build record; "
            "load it from the bundle whose manifest lists it", source=str(path),
            hint="`visionrt export RUN --engine` writes engine and manifest together")
    if suffix != ".onnx":
        raise BundleError(f"{path}: not a bundle directory, .onnx, .engine or .plan file",
                          source=str(path))
    return _bare_onnx(path)


def _bare_onnx(path: Path) -> ModelSource:
    metadata = _onnx_meta.read_metadata(path)
    text = metadata.get("visionrt.spec")
    if not text:
        raise BundleError(
            f"{path} has no 'visionrt.spec' metadata, so its preprocessing and labels are "
            "unknown", source=str(path),
            hint="load the bundle directory, or export the model with `visionrt export`")
    spec = ModelSpec.from_json(text)
    name = path.name.lower()
    precision = metadata.get("visionrt.precision") or next(
        (p for p in PRECISIONS if re.search(rf"[._-]{p}[._-]", name)), "fp32")
    target = "tensorrt" if ".trt." in name else ("cpu" if precision == "int8" else "any")
    artifact = Artifact(file=path.name, format="onnx", precision=precision,
                        sha256=sha256_file(path), bytes=path.stat().st_size, inputs=(),
                        outputs=(), batch={"min": 1, "max": BARE_MAX_BATCH}, target=target)
    return ModelSource(path, spec, path.parent, (artifact,), pinned=True)


def resolve_device(device: str, backend: str) -> str:
    """``"auto"`` -> ``"cuda:0"`` when a GPU backend can run here, else ``"cpu"``."""
    if device != "auto":
        kind, index = parse_device(device)
        return "cpu" if kind == "cpu" else f"cuda:{index}"
    if backend == "openvino":
        return "cpu"
    if backend in ("tensorrt", "onnxruntime-trt"):
        return "cuda:0"
    if _cuda.device_count() == 0:
        return "cpu"
    names = GPU_PREFERENCE if backend == "auto" else (backend,)
    if any(backend_unavailable_reason(n, "cuda:0") is None for n in names):
        return "cuda:0"
    return "cpu"


def choose(source: ModelSource, backend: str, precision: str, device: str) -> Choice:
    """Pick backend, precision and artifact; see the module docstring for the rules.

    Raises:
        ConfigError: an unknown name, or no artifact fits an explicit request.
        BackendUnavailableError: an explicitly requested backend cannot run here.
        IncompatibleEngineError: an explicitly requested engine does not fit this machine.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown; use auto or one of {BACKENDS}",
                          actual=backend)
    if precision != "auto" and precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown; use auto or one of {PRECISIONS}",
                          actual=precision)
    if precision == "bf16" and backend not in ("auto", "openvino"):
        raise BackendUnavailableError(
            f"backend {backend!r} cannot execute bf16", source=backend,
            hint="bf16 runs on backend='openvino' (CPUs with AVX512-BF16/AMX); or use fp32")
    kind = parse_device(device)[0]
    skipped: list[str] = []
    if precision == "auto" and source.pinned:
        precision = source.artifacts[0].precision
    for name in _backend_candidates(backend, precision, kind, device, skipped):
        for wanted in _precision_candidates(precision, kind):
            artifact = _find_artifact(source, name, wanted, kind, precision == "auto", device,
                                      skipped)
            if artifact is not None:
                reason = _reason(name, backend, wanted, precision, artifact, kind, skipped)
                return Choice(name, device, wanted, artifact, source.root / artifact.file, reason)
    raise ConfigError(
        f"{source.origin}: no artifact fits backend={backend}, precision={precision}, "
        f"device={device} ({'; '.join(skipped) or 'nothing matched'}); the model has "
        f"{_describe(source.artifacts)}", source=str(source.origin),
        hint="choose another --precision/--backend, or export the missing precision")


def _backend_candidates(backend: str, precision: str, kind: str, device: str,
                        skipped: list[str]) -> list[str]:
    if backend != "auto":
        reason = backend_unavailable_reason(backend, device)
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} cannot run on {device}: {reason}",
                                          source=backend, hint="run `visionrt doctor`")
        return [backend]
    if kind == "cuda":
        names = GPU_PREFERENCE
    else:
        names = CPU_PREFERENCE.get(precision, CPU_PREFERENCE["fp32"])
    usable = []
    for name in names:
        reason = backend_unavailable_reason(name, device)
        if reason is None:
            usable.append(name)
        else:
            skipped.append(f"{name}: {reason}")
    if not usable:
        raise BackendUnavailableError(f"no backend can run on {device}: {'; '.join(skipped)}",
                                      source=device, hint="run `visionrt doctor`, or use "
                                      "device='cpu'")
    return usable


def _precision_candidates(precision: str, kind: str) -> tuple[str, ...]:
    return AUTO_ORDER[kind] if precision == "auto" else (precision,)


def _find_artifact(source: ModelSource, backend: str, precision: str, kind: str, auto: bool,
                   device: str, skipped: list[str]) -> Artifact | None:
    fmt = "tensorrt" if backend == "tensorrt" else "onnx"
    file_precision = "fp32" if (precision == "bf16" and backend == "openvino") else precision
    targets = _TARGETS.get((backend, kind), ())
    found = [a for a in source.artifacts
             if a.format == fmt and a.precision == file_precision and a.target in targets]
    found.sort(key=lambda a: targets.index(a.target))
    for artifact in found:
        if auto and not verified_accurate(artifact):
            skipped.append(f"{artifact.file}: not verified accurate (parity failed or top-1 "
                           f"< {AUTO_MIN_TOP1})")
            continue
        if fmt == "tensorrt" and not _engine_fits(source, artifact, device, auto, skipped):
            continue
        return artifact
    return None


def verified_accurate(artifact: Artifact) -> bool:
    """fp32 always; other precisions when their parity record shows top-1 >= AUTO_MIN_TOP1."""
    if artifact.precision == "fp32":
        return True
    parity = artifact.parity or {}
    if parity.get("passed") is False:  # failed its export gate (written with --allow-mismatch)
        return False
    try:
        return float(parity.get("top1_agreement", 0.0)) >= AUTO_MIN_TOP1
    except (TypeError, ValueError):
        return False


def _engine_fits(source: ModelSource, artifact: Artifact, device: str, auto: bool,
                 skipped: list[str]) -> bool:
    from visionrt._optional import require
    from visionrt.runtime.trt import check_engine_compatible

    trt_version = require("tensorrt").__version__
    try:
        info = _cuda.device_info(parse_device(device)[1])
        check_engine_compatible(artifact, trt_version, info, source.root / artifact.file)
    except IncompatibleEngineError as exc:
        if not auto:
            raise
        skipped.append(str(exc))
        return False
    return True


def _reason(name: str, backend: str, precision: str, requested: str, artifact: Artifact,
            kind: str, skipped: list[str]) -> str:
    parts = []
    if backend == "auto":
        parts.append(f"backend {name}: fastest installed for {kind} {precision}")
    if requested == "auto":
        top1 = (artifact.parity or {}).get("top1_agreement")
        verified = f" (parity top-1 {top1})" if top1 is not None else ""
        parts.append(f"precision {precision}: fastest verified artifact{verified}")
    if skipped:
        parts.append("skipped: " + "; ".join(skipped))
    return "; ".join(parts) or "as requested"


def _describe(artifacts: tuple[Artifact, ...]) -> str:
    return ", ".join(f"{a.file} ({a.format} {a.precision}, target {a.target})"
                     for a in artifacts) or "no artifacts"

