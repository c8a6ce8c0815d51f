"""ExportConfig: every knob of one export, validated once, written next to the bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionrt.errors import ConfigError, check_value, cli_flag
from visionrt.gate import TOLERANCES

# Fields with a `visionrt export` flag: their errors name the flag as the user types it.
FLAGS = ("calib_samples", "calib_method", "verify_samples", "max_batch", "preprocess", "opset",
         "int8_rounding", "int8_target", "int8_max_float", "int8_stem")

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
PREPROCESS_MODES = ("graph", "host")
TRITON_BACKENDS = ("auto", "visionrt", "onnxruntime", "tensorrt")
MIN_OPSET = 18  # the dynamo exporter's own opset (torchlib); lower ones are not produced reliably
DEFAULT_CALIBRATION_METHOD = "percentile"
INT8_ROUNDINGS = ("none", "nearest", "adaround")
INT8_STEMS = ("float", "int8")
# The search's default target is the int8 gate's own top-1 agreement.
DEFAULT_INT8_TARGET = TOLERANCES["int8"].top1_agreement


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`visionrt.exporter.pipeline.export`.

    Attributes:
        out: bundle directory to create (written atomically).
        source: a run directory or ``"imagenet:ARCH"``; empty when the caller passes the model
            itself to :func:`visionrt.exporter.pipeline.export_model`.
        weights: for ``imagenet:ARCH``, a weights file (safetensors, or a state_dict ``.pth``)
            instead of the weights found offline; a run directory has its own.
        precisions: which ONNX artifacts to write; ``fp32`` is always written (the others are
            derived from it).
        calib: images for int8 calibration and for the held-out parity check: an ImageFolder, a
            flat folder, or a CSV (``image_name`` column, optional ``target``). ``None``: the run's
            training images.
        calib_samples: calibration images (disjoint from the verification images).
        calib_method: ``minmax`` | ``entropy`` | ``percentile`` (ONNX Runtime's calibrators).
        calib_batch: images per calibration step.
        int8_rounding: how int8 weights are rounded before ONNX Runtime quantizes them: ``none``
            (its round-to-nearest), ``nearest`` (the same, then each layer's bias corrected for
            the rounding's mean output shift) or ``adaround`` (rounding learned per layer on the
            calibration images, then bias correction); see :mod:`visionrt.exporter.rounding`.
        int8_target: what each int8 graph must reach on the calibration images under the gate's
            rule (top-1 agreement with fp32 on the confident samples, and top-5 containment);
            the most harmful layer chains stay in float until it does (``None``: int8 only).
            Default: the int8 gate's threshold.
        int8_max_float: at most this many layer chains stay in float in the search.
        int8_stem: ``float`` keeps the stem chain (the first conv on the image and the depthwise
            conv after it) in float in every int8 graph, as the head is; ``int8`` quantizes it.
        verify_samples: held-out images every artifact is checked on.
        max_batch: largest batch of the dynamic batch axis (and the TensorRT profile's max).
        opt_batch: TensorRT profile's opt batch (0: half of max_batch, at least 1).
        preprocess: ``graph`` (uint8 NHWC input, normalisation inside the graph) or ``host``.
        opset: ONNX opset; ``None`` keeps the exporter's default.
        engine: also build TensorRT engines (needs a GPU and the ``tensorrt`` extra).
        workspace_gb: TensorRT workspace limit.
        builder_optimization_level: TensorRT builder optimisation level (0-5).
        timing_cache: TensorRT timing cache file, read when present and written after builds.
        triton: also write a Triton model repository there.
        triton_name: the model's name in the Triton repository (default: the bundle's name).
        triton_backend: the Triton model kind: ``visionrt`` (python backend running visionrt's
            runtime, images decoded on the server), ``onnxruntime`` (onnxruntime_onnx) or
            ``tensorrt`` (tensorrt_plan, needs ``engine``); ``auto``: tensorrt when engines are
            built, else visionrt.
        allow_mismatch: write the bundle even when an artifact fails its parity gate.
        overwrite: replace an existing ``out``.
        seed: seeds the image shuffle that splits calibration and verification images.
    """

    out: Path
    source: str = ""
    weights: Path | None = None
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    calib: Path | None = None
    calib_samples: int = 128
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    calib_batch: int = 8
    int8_rounding: str = "nearest"
    int8_target: float | None = DEFAULT_INT8_TARGET
    int8_max_float: int = 4
    int8_stem: str = "float"
    verify_samples: int = 100
    max_batch: int = 32
    opt_batch: int = 0
    preprocess: str = "graph"
    opset: int | None = None
    engine: bool = False
    workspace_gb: float = 4.0
    builder_optimization_level: int = 3
    timing_cache: Path | None = None
    triton: Path | None = None
    triton_name: str = ""
    triton_backend: str = "auto"
    allow_mismatch: bool = False
    overwrite: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("weights", "calib", "timing_cache", "triton"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "precisions", _normalise_precisions(self.precisions))
        self._validate()

    def _validate(self) -> None:
        _check(self.calib_method in CALIBRATION_METHODS, "calib_method", self.calib_method,
               CALIBRATION_METHODS)
        _check(self.int8_rounding in INT8_ROUNDINGS, "int8_rounding", self.int8_rounding,
               INT8_ROUNDINGS)
        _check(self.int8_target is None or 0 < self.int8_target <= 1, "int8_target",
               self.int8_target, "a top-1 agreement in (0, 1]")
        _check(0 <= self.int8_max_float <= 1000, "int8_max_float", self.int8_max_float,
               "0..1000")
        _check(self.int8_stem in INT8_STEMS, "int8_stem", self.int8_stem, INT8_STEMS)
        _check(self.preprocess in PREPROCESS_MODES, "preprocess", self.preprocess,
               PREPROCESS_MODES)
        _check(1 <= self.calib_samples <= 100_000, "calib_samples", self.calib_samples, "1..100000")
        _check(1 <= self.calib_batch <= 256, "calib_batch", self.calib_batch, "1..256")
        _check(1 <= self.verify_samples <= 100_000, "verify_samples", self.verify_samples,
               "1..100000")
        _check(1 <= self.max_batch <= 4096, "max_batch", self.max_batch, "1..4096")
        _check(0 <= self.opt_batch <= self.max_batch, "opt_batch", self.opt_batch,
               f"0..max_batch ({self.max_batch})")
        _check(self.opset is None or MIN_OPSET <= self.opset <= 23, "opset", self.opset,
               f"{MIN_OPSET}..23 (the dynamo exporter writes opset >= {MIN_OPSET})")
        _check(0 < self.workspace_gb <= 1024, "workspace_gb", self.workspace_gb, "0..1024 GB")
        _check(0 <= self.builder_optimization_level <= 5, "builder_optimization_level",
               self.builder_optimization_level, "0..5")
        _check(self.triton_backend in TRITON_BACKENDS, "triton_backend", self.triton_backend,
               TRITON_BACKENDS)
        if self.triton_backend == "tensorrt" and not self.engine:
            raise ConfigError("--triton-backend tensorrt needs TensorRT engines: add --engine "
                              "(on a machine with an NVIDIA GPU)", source="triton_backend")
        _check(not self.triton_name or self.triton_name.replace("_", "").replace("-", "")
               .isalnum(), "triton_name", self.triton_name, "letters, digits, '-' and '_'")

    def int8_recipe(self) -> Any:
        """The :class:`~visionrt.exporter.precision.Int8Recipe` these options describe."""
        from visionrt.exporter.precision import Int8Recipe
        from visionrt.exporter.rounding import RoundingOptions

        rounding = (None if self.int8_rounding == "none" else
                    RoundingOptions(mode=self.int8_rounding, seed=self.seed))
        return Int8Recipe(method=self.calib_method, batch=self.calib_batch, rounding=rounding,
                          target=self.int8_target, max_float_chains=self.int8_max_float,
                          float_stem=self.int8_stem == "float")

    @property
    def profile_opt_batch(self) -> int:
        return self.opt_batch or max(1, self.max_batch // 2)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
            elif isinstance(value, tuple):
                data[key] = list(value)
        return data


def _check(ok: bool, name: str, value: object, expected: object) -> None:
    check_value(ok, cli_flag(name) if name in FLAGS else name, value, expected,
                owner="export option ")


def _normalise_precisions(values: Any) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")]
    values = tuple(str(v).strip().lower() for v in values)
    unknown = [v for v in values if v not in PRECISIONS]
    if not values or unknown:
        raise ConfigError(
            f"--precision {','.join(values) or '(empty)'} is not supported; expected a "
            f"comma-separated subset of {','.join(PRECISIONS)}, e.g. --precision fp32,int8",
            source="precisions", expected=PRECISIONS, actual=values,
        )
    # fp32 is the graph every other precision is derived from and verified next to.
    return tuple(p for p in PRECISIONS if p in values or p == "fp32")
