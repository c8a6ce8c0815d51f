"""The inputs a bench run feeds: random uint8 batches, endless batches of image files, and
synthetic JPEG files for a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def random_batch(spec: Any, batch_size: int, seed: int) -> np.ndarray:
    """A random uint8 NHWC batch at the model's input size: what ``Classifier.__call__`` takes
    (it converts to the graph's dtype/layout itself, inside the timed call)."""
    height, width = spec.input_size
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch_size, height, width, 3), dtype=np.uint8)


def cycle_batches(files: list[Path], batch_size: int) -> Iterator[list[Path]]:
    """Endless batches of ``batch_size`` files, wrapping around the list."""
    position = 0
    while True:
        yield [files[(position + i) % len(files)] for i in range(batch_size)]
        position = (position + batch_size) % len(files)


def readable_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The image files of ``folder`` that decode, and one message per file that does not.

    Decoded once before anything is measured: a broken photo in ``--images`` is left out with a
    note, never the end of a run whose rows were already measured.

    Raises:
        ConfigError: ``folder`` holds no image file that decodes.
    """
    from visionrt.errors import ConfigError, ImageError
    from visionrt.images import list_images, load_image

    files, broken = [], []
    for path in list_images(folder):
        try:
            load_image(path)
        except ImageError as exc:
            broken.append(str(exc))
        else:
            files.append(path)
    if not files:
        what = "holds no image files" if not broken else "holds no image that decodes"
        raise ConfigError(f"--images {folder} {what}" + (f" ({broken[0]})" if broken else ""),
                          source=str(folder), hint="pass a folder of .jpg/.png files")
    return files, broken


def synthetic_jpegs(count: int, size: tuple[int, int] = (500, 375), seed: int = 0) -> list[bytes]:
    """``count`` JPEG files (quality 90) of ImageNet's median size: smooth colour fields with
    noise, which compress and decode like photos rather than like flat colour or pure noise."""
    import io

    from PIL import Image

    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    files = []
    for _ in range(count):
        angle, phase = rng.uniform(0, np.pi, 3), rng.uniform(0, 2 * np.pi, 3)
        channels = [127 + 100 * np.sin((xx * np.cos(a) + yy * np.sin(a)) / rng.uniform(20, 80)
                                        + p) for a, p in zip(angle, phase, strict=True)]
        pixels = np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                        quality=90)
        files.append(buffer.getvalue())
    return files
