"""Turn what users pass to ``predict`` (paths, folders, globs, PIL images, arrays) into items."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visionrt.errors import ImageDecodeError, InputValidationError, VisionRTError
from visionrt.images import describe, is_image_file, list_images

_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class Item:
    """One input to classify, or the reason it cannot be (reported in its place)."""

    source: Any
    name: str
    error: VisionRTError | None = None


def expand_inputs(inputs: Any) -> list[Item]:
    """Expand ``inputs`` into items, in order: a folder becomes its images (sorted, recursive), a
    glob its matches (sorted), a 4-D array its rows. A folder or glob without images, or an object
    of an unsupported type, becomes an item carrying its error, so it is reported, not dropped."""
    if _is_single(inputs):
        inputs = [inputs]
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        inputs = list(inputs)
    items: list[Item] = []
    for index, value in enumerate(inputs):
        items.extend(_expand_one(value, index))
    return items


def _is_single(value: Any) -> bool:
    if isinstance(value, (str, os.PathLike, bytes, Image.Image)):
        return True
    return isinstance(value, np.ndarray) and value.ndim in (2, 3)


def _expand_one(value: Any, index: int) -> Iterable[Item]:
    if isinstance(value, (Image.Image, np.ndarray, bytes)):
        return [Item(value, describe(value))]
    if not isinstance(value, (str, os.PathLike)):
        error = InputValidationError(
            f"item {index}: {type(value).__name__} is not an image input; pass a path, folder, "
            "glob, PIL image or uint8 HxWx3 array", source=f"item {index}",
            actual=type(value).__name__)
        return [Item(value, f"<{type(value).__name__}>", error)]
    path = Path(value)
    if path.is_dir():
        images = list_images(path)
        if not images:
            return [Item(path, str(path), ImageDecodeError(
                f"{path}: folder has no image files ({', '.join(_suffixes())})",
                source=str(path)))]
        return [Item(p, str(p)) for p in images]
    text = str(value)
    if not path.exists() and any(c in text for c in _GLOB_CHARS):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        images = [m for m in matches if m.is_file() and is_image_file(m)]
        if not images:
            return [Item(text, text, ImageDecodeError(f"{text}: no image files match",
                                                      source=text))]
        return [Item(p, str(p)) for p in images]
    return [Item(path, str(path))]  # missing files are reported by the decoder


def _suffixes() -> tuple[str, ...]:
    from visionrt.images import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES
