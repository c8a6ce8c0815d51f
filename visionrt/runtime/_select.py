"""From a path and (backend, precision, device) requests to one artifact on one backend.

Rules (documented in ``Classifier.load``):

* ``device="auto"``: the first CUDA device when one is visible and a GPU backend is installed,
  else the CPU.
* ``backend="auto"``: the fastest backend installed for the device and precision
  (:data:`CPU_PREFERENCE`, :data:`GPU_PREFERENCE`); the choice and its reason are in ``info()``.
* ``precision="auto"``: the fastest precision whose artifact is *verified as accurate* on the
  chosen backend: fp32 always qualifies; fp16 and int8 qualify when their manifest parity record
  meets the export gate's own rule (:func:`visionrt.gate.accepts`) and that backend's check was
  not skipped at export. bf16 is never chosen automatically.
* An explicit backend, precision or device is honoured exactly or the load fails; nothing is
  silently downgraded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from visionrt import gate
from visionrt.bundle import MANIFEST, Artifact, Bundle, load_bundle, sha256_file
from visionrt.errors import BackendUnavailableError, BundleError, ConfigError
from visionrt.runtime import _cuda, _onnx_meta
from visionrt.runtime.base import BACKENDS, PRECISIONS, backend_unavailable_reason, parse_device
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

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
GPU_ONLY = ("tensorrt", "onnxruntime-trt")
# Fastest first; auto takes the first one with a verified artifact.
AUTO_ORDER = {"cpu": ("int8", "fp32"), "cuda": ("int8", "fp16", "fp32")}
# Which artifact targets suit a backend, best first.
_TARGETS = {
    ("onnxruntime", "cpu"): ("cpu", "any", "tensorrt"),
    ("openvino", "cpu"): ("cpu", "any", "tensorrt"),
    # ONNX Runtime's CUDA provider runs neither int8 graph well: the U8S8 one is tuned for CPU
    # kernels, the S8S8 one is meant for TensorRT. It gets fp32/fp16 ("any") files only.
    ("onnxruntime", "cuda"): ("any",),
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


def resolve_device(device: str, backend: str) -> tuple[str, str | None]:
    """``"auto"`` -> ``"cuda:0"`` when a GPU backend can run here, else ``"cpu"``.

    Returns:
        (device, why the GPU was skipped when ``"auto"`` settled on the CPU, else None).
    """
    if device != "auto":
        kind, index = parse_device(device)
        return ("cpu" if kind == "cpu" else f"cuda:{index}"), None
    if backend == "openvino":
        return "cpu", None
    if backend in GPU_ONLY:
        return "cuda:0", None  # GPU-only backends: their own error says what is missing
    gpu = _cuda.unavailable_reason(0)
    if gpu is not None:
        return "cpu", f"device auto: no GPU ({gpu})"
    names = GPU_PREFERENCE if backend == "auto" else (backend,)
    reasons = {n: backend_unavailable_reason(n, "cuda:0") for n in names}
    if any(reason is None for reason in reasons.values()):
        return "cuda:0", None
    return "cpu", "device auto: cuda:0 has no usable GPU backend (" + "; ".join(
        f"{n}: {r}" for n, r in reasons.items()) + ")"


def choose(source: ModelSource, backend: str, precision: str, device: str) -> Choice:
    """Pick backend, precision and artifact; see the module docstring for the rules.

    Raises:
        ConfigError: an unknown name, or no artifact fits an explicit request.
        BackendUnavailableError: an explicitly requested backend cannot run here.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown; expected auto or one of "
                          f"{', '.join(BACKENDS)}",
                          actual=backend)
    if precision != "auto" and precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown; expected auto or one of "
                          f"{', '.join(PRECISIONS)}",
                          actual=precision)
    if precision == "bf16" and backend not in ("auto", "openvino"):
        raise BackendUnavailableError(
            f"backend {backend!r} cannot execute bf16", source=backend,
            hint="bf16 runs on --backend openvino (CPUs with AVX512-BF16/AMX); or use "
            "--precision fp32")
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
        f"{source.origin}: no artifact fits --backend {backend} --precision {precision} "
        f"--device {device} ({'; '.join(skipped) or 'nothing matched'}); the model has "
        f"{_describe(source.artifacts)}", source=str(source.origin),
        hint="choose another --precision/--backend, or export the missing precision")


def choose_for_load(source: ModelSource, backend: str, precision: str, device: str) -> Choice:
    """:func:`choose` for ``Classifier.load``: ``device="auto"`` settles on a device, and the
    choice's reason says why the GPU was skipped when it was (never silently)."""
    resolved, gpu_note = resolve_device(device, backend)
    try:
        choice = choose(source, backend, precision, resolved)
    except (ConfigError, BackendUnavailableError) as exc:
        if device != "auto" or resolved == "cpu" or backend in GPU_ONLY:
            raise
        # device="auto" found a GPU, but nothing in this model runs on it: use the CPU.
        gpu_note = f"device auto: {resolved} skipped ({exc})"
        choice = choose(source, backend, precision, "cpu")
    if gpu_note is None:
        return choice
    reason = gpu_note if choice.reason == "as requested" else f"{choice.reason}; {gpu_note}"
    return replace(choice, reason=reason)


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
                                      "--device cpu")
    return usable


def _precision_candidates(precision: str, kind: str) -> tuple[str, ...]:
    return AUTO_ORDER[kind] if precision == "auto" else (precision,)


def _find_artifact(source: ModelSource, backend: str, precision: str, kind: str, auto: bool,
                   device: str, skipped: list[str]) -> Artifact | None:
    fmt = "tensorrt" if backend == "tensorrt" else "onnx"
    if (backend, kind, precision) == ("onnxruntime", "cuda", "int8"):
        skipped.append("int8 on onnxruntime's CUDA provider: the U8S8 graph is tuned for CPUs and "
                       "the S8S8 graph is for TensorRT (use backend tensorrt or onnxruntime-trt, "
                       "or fp16)")
        return None
    file_precision = "fp32" if (precision == "bf16" and backend == "openvino") else precision
    targets = _TARGETS.get((backend, kind), ())
    found = [a for a in source.artifacts
             if a.format == fmt and a.precision == file_precision and a.target in targets]
    found.sort(key=lambda a: targets.index(a.target))
    for artifact in found:
        accepted, why = gate.accepts(artifact.precision, artifact.parity, backend)
        if auto and not accepted:
            skipped.append(f"{artifact.file}: not verified accurate ({why})")
            continue
        if fmt == "tensorrt" and not _engine_fits(source, artifact, device, auto, skipped):
            continue
        return artifact
    return None


def _engine_fits(source: ModelSource, artifact: Artifact, device: str, auto: bool,
                 skipped: list[str]) -> bool:
    """For an automatic choice: does the engine fit this TensorRT and GPU? An explicit request
    goes to the backend, whose check (the same function) raises with what to rebuild."""
    if not auto:
        return True
    from visionrt.runtime.trt import engine_mismatch

    index = parse_device(device)[1]
    trt = _cuda.require_tensorrt(index)
    problem = engine_mismatch(artifact, trt.__version__, _cuda.device_info(index))
    if problem:
        skipped.append(f"{artifact.file}: {problem}")
    return problem is None


def _reason(name: str, backend: str, precision: str, requested: str, artifact: Artifact,
            kind: str, skipped: list[str]) -> str:
    parts = []
    if backend == "auto":
        parts.append(f"backend {name}: fastest installed for {kind} {precision}")
    if requested == "auto":
        why = gate.accepts(artifact.precision, artifact.parity, name)[1]
        parts.append(f"precision {precision}: fastest verified artifact ({why})")
    if skipped:
        parts.append("skipped: " + "; ".join(skipped))
    return "; ".join(parts) or "as requested"


def _describe(artifacts: tuple[Artifact, ...]) -> str:
    return ", ".join(f"{a.file} ({a.format} {a.precision}, target {a.target})"
                     for a in artifacts) or "no artifacts"

