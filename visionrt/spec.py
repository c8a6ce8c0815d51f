"""ModelSpec: the one description of a model that travels trainer -> run dir -> bundle -> runtime.

Standard library only. The runtime needs nothing else to turn image files into the exact tensor the
exported graph expects, and to turn the graph's output into labelled probabilities.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from visionrt.errors import ConfigError, check_value

_check = partial(check_value, owner="ModelSpec.")

SCHEMA_VERSION = 1

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
RESIZE_MODES = ("center_crop", "squash")
INPUT_DTYPES = ("uint8", "float32")
INPUT_LAYOUTS = ("NHWC", "NCHW")
ACTIVATIONS = ("softmax", "sigmoid")
SIXTEEN_BIT_RULES = ("shift", "minmax")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to preprocess inputs and read outputs of one classifier.

    Attributes:
        arch: timm architecture name, e.g. ``"tf_efficientnet_lite0"``.
        labels: class names, index order of the model's output.
        input_size: (height, width) the network sees.
        crop_pct: the image is resized so that its shorter side is ``input_size / crop_pct`` and then
            centre-cropped to ``input_size`` (timm's eval transform). 1.0 means no margin.
        resize_mode: ``"center_crop"`` (keep aspect, crop) or ``"squash"`` (stretch to size).
        interpolation: Pillow resampling filter name.
        mean, std: per-channel normalisation on the 0..1 scale (RGB order).
        input_dtype, input_layout: of the exported graph's input. ``uint8``/``NHWC`` means the graph
            does cast, scaling, normalisation and layout change itself (``--preprocess graph``);
            ``float32``/``NCHW`` means the host does (``--preprocess host``).
        output_activation: ``"softmax"`` over the logits, or ``"sigmoid"`` for a single-logit binary
            head (probability of ``labels[1]``).
        background: RGB colour transparent pixels are composited onto.
        sixteen_bit: how 16-bit images become 8-bit: ``"shift"`` (value >> 8) or ``"minmax"``.
        schema_version: bumped whenever the shape of this record changes.
    """

    arch: str
    labels: tuple[str, ...]
    input_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.875
    resize_mode: str = "center_crop"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    input_dtype: str = "uint8"
    input_layout: str = "NHWC"
    output_activation: str = "softmax"
    background: tuple[int, int, int] = (255, 255, 255)
    sixteen_bit: str = "shift"
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        # Normalise sequences coming from JSON lists into tuples, then validate once.
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        object.__setattr__(self, "input_size", tuple(int(x) for x in self.input_size))
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        object.__setattr__(self, "background", tuple(int(x) for x in self.background))
        self._validate()

    def _validate(self) -> None:
        _check(bool(self.arch), "arch", self.arch, "a timm architecture name")
        _check(len(self.labels) >= 1, "labels", self.labels, "at least one class name")
        _check(len(set(self.labels)) == len(self.labels), "labels", self.labels, "unique names")
        _check(
            len(self.input_size) == 2 and all(8 <= s <= 4096 for s in self.input_size),
            "input_size", self.input_size, "(height, width) each in 8..4096",
        )
        _check(0.1 <= self.crop_pct <= 1.0, "crop_pct", self.crop_pct, "a value in 0.1..1.0")
        _check(self.resize_mode in RESIZE_MODES, "resize_mode", self.resize_mode, RESIZE_MODES)
        _check(self.interpolation in INTERPOLATIONS, "interpolation", self.interpolation,
               INTERPOLATIONS)
        for name in ("mean", "std"):
            values = getattr(self, name)
            _check(len(values) == 3 and all(math.isfinite(v) for v in values), name, values,
                   "three finite numbers")
        _check(all(s > 0 for s in self.std), "std", self.std, "positive numbers")
        _check(self.input_dtype in INPUT_DTYPES, "input_dtype", self.input_dtype, INPUT_DTYPES)
        _check(self.input_layout in INPUT_LAYOUTS, "input_layout", self.input_layout, INPUT_LAYOUTS)
        _check(self.output_activation in ACTIVATIONS, "output_activation",
               self.output_activation, ACTIVATIONS)
        _check(self.output_activation != "sigmoid" or len(self.labels) == 2, "labels",
               self.labels, "exactly two labels for a sigmoid (binary) head")
        _check(len(self.background) == 3 and all(0 <= c <= 255 for c in self.background),
               "background", self.background, "an RGB triple in 0..255")
        _check(self.sixteen_bit in SIXTEEN_BIT_RULES, "sixteen_bit", self.sixteen_bit,
               SIXTEEN_BIT_RULES)
        _check(self.schema_version == SCHEMA_VERSION, "schema_version", self.schema_version,
               f"{SCHEMA_VERSION} (re-export the model with this visionrt version)")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def num_outputs(self) -> int:
        """Width of the graph's output: 1 for a sigmoid head, else one logit per class."""
        return 1 if self.output_activation == "sigmoid" else len(self.labels)

    @property
    def preprocess_in_graph(self) -> bool:
        return self.input_dtype == "uint8"

    @property
    def resize_size(self) -> int:
        """Shorter-side length before the centre crop (timm: floor(size / crop_pct))."""
        return int(math.floor(max(self.input_size) / self.crop_pct))

    def input_shape(self, batch: int | str = "N") -> tuple:
        h, w = self.input_size
        if self.input_layout == "NHWC":
            return (batch, h, w, 3)
        return (batch, 3, h, w)

    def with_(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if not isinstance(data, dict):
            raise ConfigError("a ModelSpec must be a JSON object", actual=type(data).__name__)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"ModelSpec has unknown fields {unknown}",
                actual=unknown,
                hint="the file was written by a newer visionrt; upgrade visionrt",
            )
        missing = [k for k in ("arch", "labels") if k not in data]
        if missing:
            raise ConfigError(f"ModelSpec is missing required fields {missing}", actual=missing)
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"ModelSpec is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"spec file not found: {path}", source=str(path))
        return cls.from_json(path.read_text(encoding="utf-8"))
