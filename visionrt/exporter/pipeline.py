"""The one place the export stages are chained: source -> ONNX -> fp16/int8 -> verify -> bundle.

Everything is written into a staging directory that becomes ``config.out`` only when every stage
and the parity gate passed, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.bundle import Artifact, describe_artifact, staging_dir, write_manifest
from visionrt.errors import BundleError, ConfigError
from visionrt.exporter import calibration, precision, verify
from visionrt.exporter.config import ExportConfig
from visionrt.exporter.onnx import export_onnx, graph_spec, io_infos
from visionrt.exporter.verify import ParityReport
from visionrt.images import to_model_input
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

IMAGENET_PREFIX = "imagenet:"
SYNTHETIC_SAMPLES = 32
VERIFY_BATCH = 16
INT8_FILES = {"U8S8": "model.int8.onnx", "S8S8": "model.int8.trt.onnx"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote."""

    bundle_dir: Path
    artifacts: tuple[Artifact, ...]
    reports: tuple[ParityReport, ...]
    calibration: dict[str, Any] | None = None
    triton_dir: Path | None = None
    skipped: tuple[verify.SkippedCheck, ...] = ()  # backends that cannot execute a precision here
    warnings: tuple[str, ...] = ()  # what weakens the checks (few images, unverified artifacts)
    auto_choice: str = ""  # what precision="auto" loads from the bundle on this machine, and why


@dataclass
class _Held:
    """Held-out verification data and calibration pixels, decoded once."""

    inputs: np.ndarray
    labels: np.ndarray | None
    kind: str
    reference: np.ndarray
    calib: np.ndarray | None = None
    record: dict[str, Any] = field(default_factory=dict)
    skipped: list[verify.SkippedCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def export(config: ExportConfig, *, progress: Progress | None = None) -> ExportResult:
    """Export ``config.source`` (a run dir or ``imagenet:ARCH``) into the bundle ``config.out``.

    ``progress`` is called with a short description as each stage starts (the CLI shows it).

    Raises:
        ConfigError, WeightsMismatchError, CorruptCheckpointError, DataValidationError,
        ExportError, QuantizationError, ParityError, BundleError, BackendUnavailableError.
    """
    say = progress or _log_progress
    say(f"loading {config.source}")
    model, spec, images, source = load_source(config)
    return export_model(model, spec, config, images=images, source=source, progress=say)


def load_source(config: ExportConfig) -> tuple[Any, ModelSpec, calibration.ImageSet | None, dict]:
    """(model in eval mode, spec, calibration images or None, source record) of ``config``."""
    from visionrt.trainer import models

    src = config.source
    if not src:
        raise ConfigError("no export source given; pass a run directory or imagenet:ARCH")
    if src.startswith(IMAGENET_PREFIX):
        weights = str(config.weights) if config.weights else "imagenet"
        model, spec = models.imagenet_model(src[len(IMAGENET_PREFIX):], weights=weights)
        record = {"kind": "imagenet", "arch": spec.arch, "weights": weights}
        default_images = None
    else:
        run_dir = Path(src)
        if not run_dir.is_dir():
            raise ConfigError(f"export source {src!r} is neither a run directory nor "
                              "imagenet:ARCH", source=src,
                              hint="pass the --out directory of `visionrt train`, or e.g. "
                              "imagenet:tf_efficientnet_lite0 (its weights ship with visionrt)")
        if config.weights is not None:
            raise ConfigError(f"--weights {config.weights} applies to imagenet:ARCH only; a run "
                              f"directory exports its own model.safetensors", source="weights",
                              hint="drop --weights")
        model, spec = models.load_run_model(run_dir)
        record = {"kind": "run", "path": str(run_dir.resolve()), "arch": spec.arch}
        default_images = None if config.calib else calibration.images_for_run(run_dir,
                                                                               spec.labels)
    images = (calibration.images_from_path(config.calib, spec.labels) if config.calib
              else default_images)
    return model, spec, images, record


def export_model(model: Any, spec: ModelSpec, config: ExportConfig, *,
                 images: calibration.ImageSet | None = None,
                 source: dict[str, Any] | None = None,
                 progress: Progress | None = None) -> ExportResult:
    """Export an in-memory classifier (NCHW normalised input -> logits) with ``spec``.

    Args:
        model: torch module; put in eval mode.
        spec: the model's ModelSpec (its input dtype/layout is replaced per ``config.preprocess``).
        config: export options (``config.source`` is ignored).
        images: calibration / held-out images; required for int8.
        source: provenance record for the manifest.
        progress: called with a short description as each stage starts.
    """
    say = progress or _log_progress
    model.eval()
    gspec = graph_spec(spec, config.preprocess)
    if config.engine:
        from visionrt.exporter.trt import require_tensorrt

        require_tensorrt()  # no GPU / TensorRT: fail before any work, with the reason
    if config.triton and (config.triton / triton_name(config)).exists() and not config.overwrite:
        raise BundleError(f"{config.triton / triton_name(config)} already exists",
                          source=str(config.triton), hint="pass --overwrite or another --triton")
    if "int8" in config.precisions and images is None:
        raise ConfigError("int8 export needs calibration images: pass --calib DIR (a folder of "
                          "real images of the task, or a CSV)", source="calib")
    with staging_dir(config.out, overwrite=config.overwrite) as tmp:
        say("decoding the verification and calibration images" if images is not None
            else "drawing synthetic verification images")
        held = _held_out(model, gspec, config, images)
        artifacts, reports = _onnx_artifacts(model, gspec, config, held, tmp, say)
        verify.gate(reports, allow_mismatch=config.allow_mismatch)
        if config.engine:
            say("building and checking TensorRT engines")
            engines, engine_reports = _engines(gspec, config, held, tmp, artifacts)
            verify.gate(engine_reports, allow_mismatch=config.allow_mismatch)
            artifacts, reports = artifacts + engines, reports + engine_reports
        write_manifest(tmp, gspec, artifacts, held.record or None, _source_record(source))
        (tmp / "export_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n",
                                                encoding="utf-8")
    triton_dir = _triton(config, gspec, artifacts) if config.triton else None
    held.warnings.extend(_sample_warnings(config, held))
    for warning in held.warnings:  # returned in the result too: the CLI prints them
        log.info("%s", warning)
    return ExportResult(config.out, tuple(artifacts), tuple(reports), held.record or None,
                        triton_dir, tuple(held.skipped), tuple(held.warnings),
                        auto_choice(config.out))


def _log_progress(message: str) -> None:
    log.info("%s", message)


def auto_choice(bundle_dir: Path) -> str:
    """What ``Classifier.load(bundle_dir)`` (backend, precision and device "auto") picks on this
    machine and why, from the runtime's own selection rules (nothing is loaded)."""
    from visionrt.errors import VisionRTError
    from visionrt.runtime._select import choose_for_load, resolve_source

    try:
        choice = choose_for_load(resolve_source(bundle_dir), "auto", "auto", "auto")
    except VisionRTError as exc:
        return f"--precision auto cannot load this bundle here: {exc}"
    return (f"{choice.artifact.file} on {choice.backend} ({choice.device}, "
            f"{choice.precision}): {choice.reason}")


def _sample_warnings(config: ExportConfig, held: _Held) -> list[str]:
    """Warnings when the checks ran on far fewer real images than asked (under half)."""
    warnings = []
    checked = len(held.inputs)
    if held.kind == "images" and checked < config.verify_samples / 2:
        warnings.append(
            f"the parity check used {checked} of the {config.verify_samples} images asked "
            f"(--verify-samples): one disagreeing image moves top-1 agreement by "
            f"{100 / max(checked, 1):.0f} points, so the check is coarse; pass --calib with "
            "more images of the task")
    calibrated = int(held.record.get("samples", 0)) if held.record else 0
    if held.record and calibrated < config.calib_samples / 2:
        warnings.append(
            f"int8 was calibrated on {calibrated} of the {config.calib_samples} images asked "
            "(--calib-samples): ranges from few images can clip real inputs, so int8 accuracy "
            "on new images may be lower than its parity check shows; pass --calib with more "
            "images of the task")
    return warnings


def _held_out(model: Any, spec: ModelSpec, config: ExportConfig,
              images: calibration.ImageSet | None) -> _Held:
    need_calib = "int8" in config.precisions
    if images is None:
        pixels = calibration.synthetic_images(spec, min(SYNTHETIC_SAMPLES, config.verify_samples),
                                              config.seed)
        loaded_labels, kind, calib_pixels, record = None, "synthetic", None, None
    else:
        verify_items, calib_items = calibration.split(
            images, verify=config.verify_samples, calib=config.calib_samples,
            need_calib=need_calib, seed=config.seed)
        held = calibration.load_images(verify_items, spec)
        calib = calibration.load_images(calib_items, spec) if need_calib else None
        pixels, loaded_labels, kind = held.pixels, held.labels, "images"
        calib_pixels = calib.pixels if calib is not None else None
        record = _calibration_record(config, images, calib) if calib is not None else None
        if calib is not None and len(calib.pixels) == 0:
            raise ConfigError(f"{images.origin} has too few images to calibrate int8 after "
                              "setting the verification images aside; add images",
                              source=images.origin)
    reference = verify.reference_logits(model, pixels, spec, VERIFY_BATCH)
    inputs = to_model_input(pixels, spec)
    calib_inputs = to_model_input(calib_pixels, spec) if calib_pixels is not None else None
    return _Held(inputs, loaded_labels, kind, reference, calib_inputs, record or {})


def _calibration_record(config: ExportConfig, images: calibration.ImageSet,
                        calib: calibration.LoadedImages) -> dict[str, Any]:
    return {"method": config.calib_method, "samples": int(len(calib.pixels)),
            "batch": config.calib_batch, "source": images.origin,
            "skipped_images": calib.skipped, "seed": config.seed,
            "held_out_for_verification": True, "schemes": list(INT8_FILES)}


def _onnx_artifacts(model: Any, spec: ModelSpec, config: ExportConfig, held: _Held,
                    tmp: Path, say: Progress) -> tuple[list[Artifact], list[ParityReport]]:
    say("writing model.fp32.onnx")
    fp32 = export_onnx(model, spec, tmp / "model.fp32.onnx", max_batch=config.max_batch,
                       opset=config.opset)
    planned: list[tuple[Path, str, str, dict | None]] = [(fp32, "fp32", "any", None)]
    if "fp16" in config.precisions:
        say("converting to model.fp16.onnx")
        planned.append((precision.convert_fp16(fp32, tmp / "model.fp16.onnx"), "fp16", "any",
                        None))
    if "int8" in config.precisions:
        outputs = {scheme: tmp / name for scheme, name in INT8_FILES.items()}
        say(f"calibrating int8 on {len(held.calib)} images ({', '.join(INT8_FILES.values())})")
        for graph in precision.quantize_int8(fp32, outputs, held.calib, method=config.calib_method,
                                             batch=config.calib_batch):
            planned.append((graph.path, "int8", graph.target, graph.record))
            held.record["samples"] = graph.record["calibration_samples"]  # whole batches only
    backends = verify.onnx_backends()
    artifacts, reports = [], []
    for path, prec, target, quantization in planned:
        say(f"checking {path.name} against PyTorch on {len(held.inputs)} images")
        found, skipped = verify.verify_onnx(path, prec, held.reference, held.inputs, spec,
                                            labels=held.labels, input_kind=held.kind,
                                            backends=backends,
                                            batch=min(VERIFY_BATCH, config.max_batch))
        if not found:
            held.warnings.append(f"{path.name}: no backend here can execute {prec}, so it is "
                                 "unverified and --precision auto will not pick it")
        inputs, outputs_info = io_infos(path)
        artifacts.append(describe_artifact(
            path, format="onnx", precision=prec, inputs=inputs, outputs=outputs_info,
            batch={"min": 1, "max": config.max_batch}, target=target, quantization=quantization,
            parity=verify.parity_record(found, skipped)))
        reports.extend(found)
        held.skipped.extend(skipped)
    return artifacts, reports


def _engines(spec: ModelSpec, config: ExportConfig, held: _Held, tmp: Path,
             onnx_artifacts: list[Artifact]) -> tuple[list[Artifact], list[ParityReport]]:
    from visionrt.exporter import trt

    engine_config = trt.EngineConfig(max_batch=config.max_batch,
                                     opt_batch=config.profile_opt_batch,
                                     workspace_gb=config.workspace_gb,
                                     optimization_level=config.builder_optimization_level,
                                     timing_cache=config.timing_cache or tmp / "timing.cache")
    artifacts, reports = [], []
    for source in onnx_artifacts:
        if source.target == "cpu":
            continue  # the U8S8 graph is for CPUs; TensorRT builds from the S8S8 one
        path = tmp / f"model.{source.precision}.engine"
        record = trt.build_engine(tmp / source.file, path, spec, engine_config,
                                  precision=source.precision)
        artifact = describe_artifact(
            path, format="tensorrt", precision=source.precision, inputs=source.inputs,
            outputs=source.outputs, batch={"min": 1, "max": config.max_batch}, target="tensorrt",
            quantization=source.quantization, tensorrt=record)
        # Verified through the runtime's own checks (record, digest) as users will load it.
        logits, info = verify.run_backend("tensorrt", path, held.inputs,
                                          min(VERIFY_BATCH, config.max_batch), source.precision,
                                          device="cuda:0", artifact=artifact)
        report = verify.compare(path.name, source.precision, "tensorrt", held.reference, logits,
                                spec, labels=held.labels, inputs=held.kind, backend_info=info)
        artifacts.append(replace(artifact, parity=verify.parity_record([report])))
        reports.append(report)
    (tmp / "timing.cache").unlink(missing_ok=True)  # build-host specific; not part of the bundle
    return artifacts, reports


def _triton(config: ExportConfig, spec: ModelSpec, artifacts: list[Artifact]) -> Path:
    from visionrt.exporter.triton import write_triton_repo

    kind = triton_kind(config)
    if kind == "visionrt":
        return _triton_visionrt(config, spec, artifacts)
    engines = [a for a in artifacts if a.format == "tensorrt" and a.precision == "fp32"
               and kind == "tensorrt"]
    chosen = engines[0] if engines else next(a for a in artifacts if a.precision == "fp32"
                                             and a.format == "onnx")
    model = write_triton_repo(config.triton, triton_name(config), config.out, spec, chosen,
                              overwrite=config.overwrite)
    return model.directory


def triton_kind(config: ExportConfig) -> str:
    """The Triton model kind written: ``auto`` is tensorrt with engines, else visionrt."""
    if config.triton_backend != "auto":
        return config.triton_backend
    return "tensorrt" if config.engine else "visionrt"


def _triton_visionrt(config: ExportConfig, spec: ModelSpec, artifacts: list[Artifact]) -> Path:
    from visionrt.exporter.triton_python import (
        PythonModelOptions,
        current_env_path,
        write_python_model,
    )

    options = PythonModelOptions(env_path=current_env_path())
    max_batch = min(a.max_batch for a in artifacts)
    model = write_python_model(config.triton, triton_name(config), config.out, spec, max_batch,
                               options, overwrite=config.overwrite)
    return model.directory


def triton_name(config: ExportConfig) -> str:
    """The model's name in the Triton repository (default: the bundle directory's name)."""
    return config.triton_name or config.out.name.replace(".", "_")


def _source_record(source: dict[str, Any] | None) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    versions = {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    return {**(source or {"kind": "model"}), "versions": versions}
