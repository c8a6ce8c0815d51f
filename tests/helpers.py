"""Helpers shared by test folders: images and hostile files built in code (never committed), and
the benchmark scripts imported as modules."""

from __future__ import annotations

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    """``image`` saved to bytes in ``fmt`` (the fuzz corpus's own encoder)."""
    return load_benchmark("fuzz_images")._encode(image, fmt, **kw)


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """A uint8 RGB test pattern whose every pixel differs from its neighbours."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return np.stack([x, y, 255 - x], axis=2)


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb header)."""
    return load_benchmark("fuzz_images")._png_with_ihdr(width, height)


def exif_oriented(orientation: int) -> tuple[bytes, np.ndarray]:
    """(PNG bytes stored with EXIF ``orientation``, the upright image a viewer shows)."""
    upright = np.zeros((20, 30, 3), dtype=np.uint8)
    upright[:5, :5] = 255
    upright[-3:, -3:] = (0, 0, 255)
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright)
    if inverse is not None:
        stored = stored.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "PNG", exif=exif), upright


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    module_name = f"visionrt_benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:  # the scripts import their helpers (_common, _tiny_bundle)
        sys.path.append(str(folder))
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
