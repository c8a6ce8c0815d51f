"""A deterministic synthetic ImageFolder: classes differ in shape, texture and colour.

Each image draws one shape of its class (circle, square, triangle, cross, ring, star, ...) with a
class texture (solid, stripes, checks, dots) over a cluttered background, with random position,
scale, rotation, jitter of hue and brightness and a distractor shape of another class's colour.
It is learnable but not trivial: no single pixel statistic separates the classes. Numpy + Pillow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from visionrt.errors import check_value

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star", "diamond", "bar")
TEXTURES = ("solid", "stripes", "checks", "dots")
PALETTE = (
    (220, 60, 50), (50, 160, 70), (50, 90, 210), (230, 190, 40),
    (160, 70, 190), (40, 190, 200), (240, 130, 40), (120, 120, 120),
)


@dataclass(frozen=True)
class SynthConfig:
    out: Path
    classes: int = 4
    per_class: int = 60
    size: int = 96
    seed: int = 0
    val_fraction: float = 0.0

    def __post_init__(self) -> None:
        # Named by their `visionrt synth` flags: this config is built only from those options.
        check_value(2 <= self.classes <= len(SHAPES), "--classes", self.classes,
                    f"2..{len(SHAPES)}")
        check_value(1 <= self.per_class <= 100_000, "--per-class", self.per_class, "1..100000")
        check_value(16 <= self.size <= 1024, "--size", self.size, "16..1024 pixels")


def class_names(classes: int) -> list[str]:
    return [f"{SHAPES[i]}_{TEXTURES[i % len(TEXTURES)]}" for i in range(classes)]


def make_synthetic_dataset(
    out: str | Path, classes: int = 4, per_class: int = 60, size: int = 96, seed: int = 0
) -> Path:
    """Write ``out/<class>/<class>_<i>.png`` and return ``out``. Same arguments, same bytes."""
    config = SynthConfig(Path(out), classes, per_class, size, seed)
    names = class_names(config.classes)
    for index, name in enumerate(names):
        folder = config.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(config.per_class):
            rng = np.random.default_rng([config.seed, index, i])
            draw_sample(index, config.classes, config.size, rng).save(folder / f"{name}_{i:04d}.png")
    return config.out


def draw_sample(label: int, classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class ``label``."""
    image = _background(size, rng)
    other = int(rng.integers(classes - 1))
    other = other + 1 if other >= label else other
    # A small distractor of another class's colour, then the class's own shape on top.
    _shape(image, SHAPES[other % len(SHAPES)], _jitter(PALETTE[other], rng), "solid",
           size, rng, scale=(0.15, 0.25))
    _shape(image, SHAPES[label], _jitter(PALETTE[label], rng), TEXTURES[label % len(TEXTURES)],
           size, rng, scale=(0.3, 0.5))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    noise = rng.normal(0, 6, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _jitter(color: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    gain = rng.uniform(0.75, 1.2)
    return tuple(int(np.clip(c * gain + rng.normal(0, 18), 0, 255)) for c in color)


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    low = rng.integers(30, 200, 3)
    high = rng.integers(30, 200, 3)
    ramp = np.linspace(0, 1, size)[None, :, None]
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    pixels = low + (high - low) * ramp
    return Image.fromarray(np.broadcast_to(pixels, (size, size, 3)).astype(np.uint8), "RGB")


def _shape(image: Image.Image, shape: str, color: tuple[int, int, int], texture: str,
           size: int, rng: np.random.Generator, scale: tuple[float, float]) -> None:
    radius = size * rng.uniform(*scale) / 2
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * math.pi)
    mask = Image.new("L", image.size, 0)
    _draw_mask(ImageDraw.Draw(mask), shape, cx, cy, radius, angle)
    fill = _texture(texture, color, size, rng)
    image.paste(fill, (0, 0), mask)


def _draw_mask(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               angle: float) -> None:
    def polygon(points: int, inner: float | None = None) -> list[tuple[float, float]]:
        coords = []
        steps = points * (2 if inner else 1)
        for k in range(steps):
            rad = r * (inner if inner and k % 2 else 1.0)
            theta = angle + 2 * math.pi * k / steps
            coords.append((cx + rad * math.cos(theta), cy + rad * math.sin(theta)))
        return coords

    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        draw.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)
    elif shape == "square":
        draw.polygon(polygon(4), fill=255)
    elif shape == "triangle":
        draw.polygon(polygon(3), fill=255)
    elif shape == "star":
        draw.polygon(polygon(5, inner=0.45), fill=255)
    elif shape == "diamond":
        pts = polygon(4)
        draw.polygon([(cx + (x - cx) * 0.6, y) for x, y in pts], fill=255)
    elif shape == "bar":
        dx, dy = math.cos(angle) * r, math.sin(angle) * r
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(2, int(r * 0.5)))
    else:  # cross
        for a in (angle, angle + math.pi / 2):
            dx, dy = math.cos(a) * r, math.sin(a) * r
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255,
                      width=max(2, int(r * 0.4)))


def _texture(texture: str, color: tuple[int, int, int], size: int,
             rng: np.random.Generator) -> Image.Image:
    base = np.empty((size, size, 3), dtype=np.float64)
    base[:] = color
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(3, int(size * rng.uniform(0.06, 0.1)))
    if texture == "stripes":
        pattern = ((xx + yy) // period) % 2
    elif texture == "checks":
        pattern = ((xx // period) + (yy // period)) % 2
    elif texture == "dots":
        pattern = ((xx % period) < period / 2) & ((yy % period) < period / 2)
    else:
        pattern = np.zeros((size, size))
    base *= (1.0 - 0.45 * pattern)[:, :, None]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
