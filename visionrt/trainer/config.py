"""TrainConfig: every knob of a training run, validated once, written next to the run as JSON.

Built at the edge (CLI or a Python caller), frozen, and stored in ``RUN/config.json`` so that a run
can be resumed (``TrainConfig.from_run``) and re-evaluated with the same data options.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from visionrt.errors import ConfigError, check_value, cli_flag

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
AUGMENT_PRESETS = ("none", "light", "keras")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")
LOSSES = ("auto", "ce", "bce", "focal")
POOLINGS = ("avg", "max")
CLASS_WEIGHTS = ("none", "auto")
SAMPLERS = ("none", "balanced")
ON_BAD_IMAGE = ("skip", "fail")
CACHE_MODES = ("auto", "on", "off")
HEAD_LR = 1e-2  # default learning rate when only the new head trains
FINETUNE_LR = 1e-3  # default when (part of) the backbone trains
# Stored absolute, so that a run's config.json finds its data from any working directory
# (`visionrt export RUN` calibrates on it). abspath, not resolve: symlinked folders keep their name.
DATA_PATHS = ("data", "val", "csv", "images")
# Fields without a command-line flag: their errors name the field, never a flag that does not exist.
NOT_FLAGS = ("cval", "diverge_steps")


def _check(ok: bool, name: str, value: object, expected: object) -> None:
    """check_value, naming the field by its `visionrt train` flag (errors speak the CLI)."""
    check_value(ok, name if name in NOT_FLAGS else cli_flag(name), value, expected)


@dataclass(frozen=True)
class AugmentConfig:
    """Keras ``ImageDataGenerator`` parameters (same names and meaning).

    Attributes:
        rotation_range: degrees; angle drawn from U(-r, r).
        width_shift_range, height_shift_range: fraction of the size (< 1) or pixels (>= 1).
        shear_range: shear angle in degrees, drawn from U(-s, s) (Keras semantics).
        zoom_range: z -> zoom factors drawn independently per axis from U(1-z, 1+z).
        horizontal_flip, vertical_flip: flip with probability 0.5.
        brightness_range: (low, high) multiplicative brightness factor, or None.
        fill_mode: how pixels outside the source are filled: constant|nearest|reflect|wrap.
        cval: fill value (0..255) for ``constant``.
    """

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness_range: tuple[float, float] | None = None
    fill_mode: str = "nearest"
    cval: float = 0.0

    def __post_init__(self) -> None:
        if self.brightness_range is not None:
            object.__setattr__(self, "brightness_range",
                               tuple(float(x) for x in self.brightness_range))
        for name in ("rotation_range", "width_shift_range", "height_shift_range",
                     "shear_range", "zoom_range"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, name, value, "a number >= 0")
        _check(self.rotation_range <= 360, "rotation_range", self.rotation_range, "0..360 degrees")
        _check(self.zoom_range < 1, "zoom_range", self.zoom_range, "a value in [0, 1)")
        _check(self.fill_mode in FILL_MODES, "fill_mode", self.fill_mode, FILL_MODES)
        _check(0 <= self.cval <= 255, "cval", self.cval, "0..255")
        if self.brightness_range is not None:
            low, high = self.brightness_range if len(self.brightness_range) == 2 else (-1, -1)
            _check(0 <= low <= high, "brightness_range", self.brightness_range,
                   "two numbers 0 <= low <= high, e.g. 0.8,1.2")

    @property
    def is_identity(self) -> bool:
        return self == AugmentConfig(fill_mode=self.fill_mode, cval=self.cval)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AugmentConfig:
        """``none``, ``light`` or ``keras`` (the seed's example), then explicit overrides."""
        _check(name in AUGMENT_PRESETS, "augment", name, AUGMENT_PRESETS)
        base: dict[str, Any] = {
            "none": {},
            "light": {"rotation_range": 10.0, "width_shift_range": 0.1,
                      "height_shift_range": 0.1, "zoom_range": 0.1, "horizontal_flip": True},
            "keras": {"zoom_range": 0.3, "rotation_range": 50.0, "width_shift_range": 0.2,
                      "height_shift_range": 0.2, "shear_range": 0.2, "horizontal_flip": True,
                      "fill_mode": "nearest"},
        }[name]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. See ``visionrt train --help`` for each option.

    Data: ``data`` (an ImageFolder) or ``csv`` + ``images`` (Kaggle SIIM-ISIC layout). Validation
    comes from ``val`` (a folder) or a stratified (grouped, for CSVs with ``group_column``) split
    of ``val_split``.
    """

    out: Path
    data: Path | None = None
    val: Path | None = None
    val_split: float = 0.2
    csv: Path | None = None
    images: Path | None = None
    image_column: str = "image_name"
    label_column: str = "target"
    group_column: str | None = None  # None: use "patient_id" when the CSV has it
    image_suffix: str = ".jpg"
    # model
    arch: str = "tf_efficientnet_lite0"
    weights: str = "imagenet"
    freeze: str = "backbone"  # "backbone" | "none" | a fraction "0.7"
    unfreeze_at: int | None = None
    unfreeze_lr_factor: float = 0.01
    pooling: str = "avg"
    dropout: float = 0.0
    img_size: int | None = None
    # optimisation
    epochs: int = 5
    batch_size: int = 32
    lr: float | None = None  # None: HEAD_LR with a frozen backbone, FINETUNE_LR otherwise
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    loss: str = "auto"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weight: str = "none"
    sampler: str = "none"
    amp: bool = False
    channels_last: bool = True
    early_stopping: int | None = None
    monitor: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_features: str = "auto"
    # robustness
    seed: int = 0
    num_workers: int = 0
    on_bad_image: str = "skip"
    max_bad_fraction: float = 0.01
    diverge_steps: int = 20
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("out", *DATA_PATHS):
            value = getattr(self, name)
            if value is not None:
                path = Path(os.path.abspath(value)) if name in DATA_PATHS else Path(value)
                object.__setattr__(self, name, path)
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        object.__setattr__(self, "freeze", str(self.freeze))
        if self.lr is None and self.freeze_fraction is not None:
            # A linear probe on frozen features wants a larger step than fine-tuning does.
            object.__setattr__(self, "lr", HEAD_LR if self.freeze_fraction == 1.0 else FINETUNE_LR)
        self._validate()

    def _validate(self) -> None:
        if self.csv is None and self.data is None:
            raise ConfigError("no training data given; pass an image folder (DATA) or "
                              "--csv FILE --images DIR")
        if self.csv is not None and self.data is not None:
            raise ConfigError(f"give either DATA ({self.data}) or --csv ({self.csv}), not both")
        if self.csv is not None and self.images is None:
            raise ConfigError(f"--csv {self.csv} needs --images DIR (the folder of the images)")
        _check(0 < self.val_split < 1, "val_split", self.val_split, "a fraction in (0, 1)")
        _check(self.freeze_fraction is not None, "freeze", self.freeze,
               "'backbone', 'none' or a fraction in [0, 1] such as 0.7")
        _check(self.unfreeze_at is None or self.unfreeze_at >= 1, "unfreeze_at",
               self.unfreeze_at, "an epoch >= 1")
        if self.unfreeze_at is not None:
            _check(self.unfreeze_at < self.epochs, "unfreeze_at", self.unfreeze_at,
                   f"fewer than --epochs ({self.epochs}): the backbone is unfrozen after "
                   "that many epochs")
            _check(self.freeze != "none", "unfreeze_at", self.unfreeze_at,
                   "--freeze backbone or a fraction (nothing is frozen with --freeze none)")
            _check(self.schedule != "onecycle", "schedule", self.schedule,
                   "cosine or constant with --unfreeze-at (one-cycle has no second phase)")
        _check(0 < self.unfreeze_lr_factor <= 1, "unfreeze_lr_factor", self.unfreeze_lr_factor,
               "a factor in (0, 1]")
        _check(self.pooling in POOLINGS, "pooling", self.pooling, POOLINGS)
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "a rate in [0, 1)")
        _check(self.img_size is None or 16 <= self.img_size <= 2048, "img_size", self.img_size,
               "16..2048 pixels")
        _check(1 <= self.epochs <= 100_000, "epochs", self.epochs, "1..100000")
        _check(1 <= self.batch_size <= 65_536, "batch_size", self.batch_size, "1..65536")
        _check(self.lr is not None and math.isfinite(self.lr) and self.lr > 0, "lr", self.lr,
               "a positive number")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, OPTIMIZERS)
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, SCHEDULES)
        _check(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", self.warmup_epochs,
               f"0 <= warmup < epochs ({self.epochs})")
        _check(self.loss in LOSSES, "loss", self.loss, LOSSES)
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "[0, 1)")
        _check(self.class_weight in CLASS_WEIGHTS, "class_weight", self.class_weight,
               CLASS_WEIGHTS)
        _check(self.sampler in SAMPLERS, "sampler", self.sampler, SAMPLERS)
        _check(self.early_stopping is None or self.early_stopping >= 1, "early_stopping",
               self.early_stopping, "a patience >= 1 epoch")
        _check(self.cache_features in CACHE_MODES, "cache_features", self.cache_features,
               CACHE_MODES)
        _check(self.num_workers >= 0, "num_workers", self.num_workers, ">= 0")
        _check(self.on_bad_image in ON_BAD_IMAGE, "on_bad_image", self.on_bad_image,
               ON_BAD_IMAGE)
        _check(0 <= self.max_bad_fraction <= 1, "max_bad_fraction", self.max_bad_fraction,
               "a fraction in [0, 1]")
        _check(self.diverge_steps >= 1, "diverge_steps", self.diverge_steps, ">= 1")
        _check(self.image_suffix == "" or self.image_suffix.startswith("."), "image_suffix",
               self.image_suffix, "an extension such as .jpg")

    @property
    def freeze_fraction(self) -> float | None:
        """0.0 (nothing frozen) .. 1.0 (whole backbone frozen); None when unparsable."""
        if self.freeze == "backbone":
            return 1.0
        if self.freeze == "none":
            return 0.0
        try:
            value = float(self.freeze)
        except ValueError:
            return None
        return value if 0.0 <= value <= 1.0 else None

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        aug = data["augment"]
        if aug.get("brightness_range") is not None:
            aug["brightness_range"] = list(aug["brightness_range"])
        return data

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def fingerprint(self, *, relative_paths: bool = False) -> str:
        """Hash of everything that must not change when a run is resumed."""
        data = self.to_dict()
        for key in ("resume", "overwrite", "epochs", "num_workers", "out", "early_stopping"):
            data.pop(key, None)
        if relative_paths:
            data.update({k: os.path.relpath(data[k]) for k in DATA_PATHS if data[k] is not None})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprint_matches(self, stored: str | None) -> bool:
        """Whether a checkpoint's fingerprint is this config's. Runs written before data paths
        were stored absolute hashed them as typed, relative to the working directory."""
        return stored in (self.fingerprint(), self.fingerprint(relative_paths=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config has unknown fields {unknown}",
                              hint="it was written by another visionrt version")
        return cls(**data)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> TrainConfig:
        """The config a run was started with (``RUN/config.json``)."""
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path} not found: {run_dir} is not a visionrt run directory",
                              source=str(path), hint="pass the --out folder of a training run")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc})", source=str(path)) from exc
        return cls.from_dict(data)
