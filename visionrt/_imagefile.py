"""Reading an image file safely: size, format and dimension guards before any pixel is decoded,
and the one pixel-loading call whose failures become typed ImageErrors (see ``visionrt.images``).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from visionrt.errors import (
    ConfigError,
    ImageDecodeError,
    ImageTooLargeError,
    TruncatedImageError,
    UnsupportedFormatError,
)

# Pillow formats we decode. Everything else (EPS via Ghostscript, FITS, PSD, ICNS, BLP, ICO, ...)
# is refused before any pixel decoding (see Pillow's security handbook).
Image.init()
# MPO (multi-picture phone JPEGs) is its own plugin in older Pillow and part of JPEG in newer ones.
ALLOWED_FORMATS = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF") if f in Image.OPEN
)
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
MAX_ASPECT_RATIO = 1000

# Magic bytes of formats that Pillow could open but we refuse, to say *what* the file is.
_REFUSED_MAGIC = (
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"SIMPLE  =", "FITS"),
    (b"8BPS", "PSD"),
    (b"icns", "ICNS"),
    (b"BLP1", "BLP"),
    (b"BLP2", "BLP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"%PDF", "PDF"),
    (b"DDS ", "DDS"),
    (b"\x97JB2", "JBIG2"),
)


@dataclass(frozen=True)
class DecodeLimits:
    """Guards applied before pixels are decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    formats: tuple[str, ...] = ALLOWED_FORMATS

    def __post_init__(self) -> None:
        # The limits are configurable but never "off" (no None / 0 / inf, unlike MAX_IMAGE_PIXELS).
        for key in ("max_pixels", "max_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"DecodeLimits.{key} must be a positive integer, got {value!r}; the "
                    "decompression-bomb guard cannot be switched off",
                    source=key, expected="int >= 1", actual=value,
                )


DEFAULT_LIMITS = DecodeLimits()


def read_source(source: str | os.PathLike | bytes, limits: DecodeLimits, name: str) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageDecodeError(f"{name}: is a directory, not an image file", source=name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageDecodeError(f"{name}: file not found", source=name) from None
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot read ({exc.strerror})", source=name) from exc
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                f"{name}: file is {size} bytes, over the {limits.max_bytes}-byte limit",
                source=name, expected=limits.max_bytes, actual=size,
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot read ({exc.strerror})", source=name) from exc
    if not data:
        raise ImageDecodeError(f"{name}: file is empty (0 bytes)", source=name)
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"{name}: {len(data)} bytes, over the {limits.max_bytes}-byte limit",
            source=name, expected=limits.max_bytes, actual=len(data),
        )
    return data


def open_image(data: bytes, limits: DecodeLimits, name: str) -> Image.Image:
    for magic, fmt in _REFUSED_MAGIC:
        if data.startswith(magic) and fmt not in limits.formats:
            raise UnsupportedFormatError(
                f"{name}: {fmt} files are not accepted (allowed: {', '.join(limits.formats)})",
                source=name, expected=limits.formats, actual=fmt,
            )
    try:
        image = Image.open(io.BytesIO(data), formats=list(limits.formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is an exception only under ``-W error``; either way it is a bomb (S7).
        raise ImageTooLargeError(f"{name}: {exc}", source=name) from exc
    except UnidentifiedImageError:
        detected = _sniff_refused_format(data, limits)
        if detected is not None:
            raise UnsupportedFormatError(
                f"{name}: {detected} files are not accepted "
                f"(allowed: {', '.join(limits.formats)})",
                source=name, expected=limits.formats, actual=detected,
            ) from None
        raise ImageDecodeError(
            f"{name}: not a recognised image (allowed formats: {', '.join(limits.formats)})",
            source=name,
        ) from None
    except Exception as exc:  # noqa: BLE001 - hostile headers raise arbitrary types, see _decode
        raise ImageDecodeError(f"{name}: cannot parse image header ({type(exc).__name__}: "
                               f"{exc})", source=name) from exc
    if image.format not in limits.formats:  # pragma: no cover - Pillow honours formats=
        image.close()
        raise UnsupportedFormatError(f"{name}: {image.format} is not accepted", source=name)
    return image


def _sniff_refused_format(data: bytes, limits: DecodeLimits) -> str | None:
    """Name the format of a file no allowed plugin opened, from Pillow's magic-byte checks.

    Only the ``accept`` functions run (prefix comparisons, as in ``Image.open``); no refused
    plugin ever parses the file.
    """
    prefix = data[:16]
    for fmt, (_, accept) in Image.OPEN.items():
        if fmt in limits.formats or accept is None:
            continue
        try:
            if accept(prefix):
                return fmt
        except Exception:  # noqa: BLE001, S112 - a failing magic check means "not this format"
            continue
    return None



def check_dimensions(image: Image.Image, limits: DecodeLimits, name: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{name}: image has zero size {width}x{height}", source=name)
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{limits.max_pixels} (decompression-bomb guard); raise DecodeLimits.max_pixels "
            "only for files you trust",
            source=name, expected=limits.max_pixels, actual=(width, height),
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageDecodeError(
            f"{name}: aspect ratio {width}x{height} is beyond 1:{MAX_ASPECT_RATIO}; "
            "crop the image before classifying it",
            source=name, actual=(width, height),
        )


def load_pixels(image: Image.Image, name: str) -> None:
    # An opened image is positioned on frame 0. Never ask for n_frames: GIF and TIFF count frames
    # by walking every one of them (thousands in a hostile file, B11).
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: {exc}", source=name) from exc
    except OSError as exc:
        if "truncated" in str(exc).lower() or "broken data stream" in str(exc).lower():
            raise TruncatedImageError(f"{name}: {_truncation(exc)}; copy or download it again",
                                      source=name) from exc
        raise ImageDecodeError(f"{name}: cannot decode ({exc})", source=name) from exc
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise ImageDecodeError(f"{name}: cannot decode ({type(exc).__name__}: {exc})",
                               source=name) from exc


def _truncation(exc: OSError) -> str:
    """Pillow's text, stated once: "image file is truncated (10 bytes not processed)"."""
    text = str(exc).strip()
    if text.lower().startswith("image file is truncated"):
        return text
    return f"image file is truncated ({text})"
