"""Decode, orient, convert, resize and crop images: numpy + Pillow only.

One function chain shared by the trainer's eval transform, the exporter's calibration and the
runtime, so they cannot disagree on a pixel:

    load_image(source)            -> uint8 RGB (H, W, 3), EXIF-oriented, alpha composited
    resize_crop(image, spec)      -> uint8 RGB (h, w, 3) of spec.input_size
    preprocess(source, spec)      -> both, with JPEG draft decoding when the image is much larger
    normalize(batch_nhwc, spec)   -> float32 NCHW, for host-side preprocessing

Every failure is an ImageError subclass naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from visionrt._imagefile import (  # noqa: F401 - DecodeLimits and its defaults are public here
    ALLOWED_FORMATS,
    DEFAULT_LIMITS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT_RATIO,
    DecodeLimits,
    check_dimensions,
    load_pixels,
    open_image,
    read_source,
)
from visionrt.errors import ImageDecodeError, ImageError, InputValidationError
from visionrt.spec import ModelSpec

_ORIENTATION = 0x0112  # EXIF tag
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray

assert not ImageFile.LOAD_TRUNCATED_IMAGES, "visionrt never pads truncated images silently"


def describe(source: object) -> str:
    """A short name for an image source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {'x'.join(map(str, source.shape))}>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    draft_size: tuple[int, int] | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    sixteen_bit: str = "shift",
) -> np.ndarray:
    """Decode ``source`` into a C-contiguous uint8 RGB array of shape (H, W, 3).

    Args:
        source: a path, encoded bytes, a PIL image, or a uint8 array (HxWx3 RGB or HxW gray).
        limits: pixel-count, file-size and format guards.
        draft_size: (width, height) the image will be reduced to; lets JPEG decode at 1/2..1/8
            scale when the file is much larger (a no-op for other formats).
        background: colour transparent pixels are composited onto.
        sixteen_bit: ``"shift"`` (>> 8) or ``"minmax"`` for 16/32-bit integer images.

    Raises:
        ImageDecodeError, TruncatedImageError, ImageTooLargeError, UnsupportedFormatError,
        InputValidationError (for arrays).
    """
    if isinstance(source, np.ndarray):
        return validate_array(source)  # already pixels: no round trip through PIL
    return _decode_source(source, limits, draft_size, background, sixteen_bit, _as_array)


def _decode_source(
    source: ImageSource,
    limits: DecodeLimits,
    draft_size: tuple[int, int] | None,
    background: tuple[int, int, int],
    sixteen_bit: str,
    finish: Callable[[Image.Image], np.ndarray],
) -> np.ndarray:
    """``finish(rgb)`` of the decoded source, called while the file is still open.

    ``finish`` gets the RGB image without a copy (it may be the decoder's own image), so the one
    conversion to numpy happens after any resizing: decode -> resize -> array, not
    decode -> array -> image -> resize -> array (one copy of the full-size image fewer).
    """
    if isinstance(source, np.ndarray):
        return finish(Image.fromarray(validate_array(source)))
    if isinstance(source, Image.Image):
        return finish(_convert(source, background, sixteen_bit, describe(source)))
    name = describe(source)
    data = read_source(source, limits, name)
    image = open_image(data, limits, name)
    try:
        check_dimensions(image, limits, name)
        return _decode(image, name, draft_size, background, sixteen_bit, finish)
    finally:
        image.close()


def _as_array(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _decode(
    image: Image.Image,
    name: str,
    draft_size: tuple[int, int] | None,
    background: tuple[int, int, int],
    sixteen_bit: str,
    finish: Callable[[Image.Image], np.ndarray],
) -> np.ndarray:
    """``finish`` of the pixels of an opened, size-checked image; failures become ImageErrors."""
    try:
        if draft_size is not None and image.format in ("JPEG", "MPO"):
            image.draft("RGB", _draft_request(image.size, draft_size))
        load_pixels(image, name)
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)  # a copy; upright images are used as they are
        return finish(_convert(image, background, sixteen_bit, name))
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001
        # Pillow's plugins raise arbitrary exception types on hostile bytes (fuzzing found a
        # KeyError from TIFF's _setup); any of them means "this file cannot be decoded".
        raise ImageDecodeError(f"{name}: cannot decode ({type(exc).__name__}: {exc})",
                               source=name) from exc


def _draft_request(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    # Ask the JPEG decoder for at least twice the target so quality matches a full decode + resize
    # (Pillow's own reducing_gap=2 rule); draft() picks the largest 1/2^k scale >= this.
    scale = max(2 * target[0] / size[0], 2 * target[1] / size[1])
    return (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))


def _convert(
    image: Image.Image, background: tuple[int, int, int], sixteen_bit: str, name: str
) -> Image.Image:
    try:
        return _to_rgb(image, background, sixteen_bit)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: cannot convert mode {image.mode} to RGB ({exc})",
                               source=name) from exc


def _to_rgb(image: Image.Image, background: tuple[int, int, int], sixteen_bit: str) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _wide_to_rgb(image, sixteen_bit)
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK (incl. Adobe inverted), YCbCr, LAB, HSV


def _wide_to_rgb(image: Image.Image, rule: str) -> Image.Image:
    """16-bit / 32-bit integer or float gray to 8-bit RGB with an explicit, recorded rule."""
    values = np.asarray(image)
    if values.dtype.byteorder == ">" or values.dtype.byteorder == "<":
        values = values.astype(values.dtype.newbyteorder("="))
    with np.errstate(invalid="ignore"):  # signalling NaNs in float TIFFs; zeroed next line
        values = values.astype(np.float64)
    values[~np.isfinite(values)] = 0
    if rule == "minmax":
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    elif image.mode == "F":
        scaled = values * 255.0 if values.max() <= 1.0 else values
    else:
        scaled = np.floor(np.clip(values, 0, 65535) / 256.0)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def validate_array(array: np.ndarray, index: int | None = None) -> np.ndarray:
    """Check an in-memory image: uint8 HxWx3 (RGB) or HxW (gray, copied to 3 channels).

    Raises:
        InputValidationError naming the item, what was expected and what was found.
    """
    where = "array" if index is None else f"item {index}"
    got = f"{array.dtype} {'x'.join(map(str, array.shape))}"

    def fail(why: str) -> InputValidationError:
        return InputValidationError(
            f"{where}: expected a uint8 HxWx3 RGB array, got {got} ({why})",
            source=where, expected="uint8 HxWx3", actual=got,
        )

    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and not np.isfinite(array).all():
            raise fail("contains NaN or inf")
        raise fail("convert with np.clip(x, 0, 255).astype(np.uint8); scale 0..1 floats by 255")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3:
        raise fail(f"{array.ndim} dimensions")
    if array.shape[2] != 3:
        layout = " (looks like CHW: use array.transpose(1, 2, 0))" if array.shape[0] == 3 else ""
        raise fail(f"{array.shape[2]} channels{layout}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise fail("empty image")
    return np.ascontiguousarray(array)


def resize_crop(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize and centre-crop a uint8 RGB array to ``spec.input_size`` (timm's eval transform).

    Only the region that survives the crop is resampled (``box=``), so a 2x20000 strip costs no
    more than a 224x224 one.
    """
    if image.shape[:2] == tuple(spec.input_size):
        return image
    return _resize_crop(Image.fromarray(image), spec)


def _resize_crop(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    out_h, out_w = spec.input_size
    if image.size != (out_w, out_h):
        image = image.resize((out_w, out_h), _RESAMPLE[spec.interpolation],
                             box=crop_box(image.size, spec))
    return _as_array(image)


def crop_box(size: tuple[int, int], spec: ModelSpec) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) region of an image of ``size`` that becomes the input."""
    width, height = size
    out_h, out_w = spec.input_size
    if spec.resize_mode == "squash":
        return (0.0, 0.0, float(width), float(height))
    scale = spec.resize_size / min(width, height)
    # Resized image is (width*scale, height*scale); crop out_w x out_h from its centre (clamped
    # when the resized image is smaller than the crop, e.g. crop_pct=1 with non-square sizes).
    crop_w = min(out_w / scale, width)
    crop_h = min(out_h / scale, height)
    left = (width - crop_w) / 2.0
    top = (height - crop_h) / 2.0
    return (left, top, left + crop_w, top + crop_h)


def preprocess(
    source: ImageSource, spec: ModelSpec, *, limits: DecodeLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode and resize one image for ``spec``: uint8 (h, w, 3)."""
    out_h, out_w = spec.input_size
    draft = (out_w, out_h) if spec.resize_mode == "squash" else _short_side_draft(spec)
    return _decode_source(source, limits, draft, spec.background, spec.sixteen_bit,
                          lambda rgb: _resize_crop(rgb, spec))


def _short_side_draft(spec: ModelSpec) -> tuple[int, int]:
    side = spec.resize_size
    return (side, side)


def normalize(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, scaled to 0..1 and normalised with spec.mean/std."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    out = (batch.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def to_model_input(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """A uint8 NHWC batch in the dtype/layout the exported graph expects."""
    if spec.preprocess_in_graph:
        return np.ascontiguousarray(batch)
    return normalize(batch, spec)


def read_image_bytes(source: str | os.PathLike | bytes,
                     limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    """The encoded bytes of an image file, with decoding's size checks and error texts (for
    callers that send files elsewhere to be decoded, e.g. to a server)."""
    return read_source(source, limits, describe(source))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, by extension."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if is_image_file(p) and not p.is_dir())

