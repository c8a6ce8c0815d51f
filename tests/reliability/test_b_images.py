"""Catalogue B1-B6: hostile and unusual images decode correctly or fail with a typed error
(B7-B13, pixel formats and shapes: test_b_pixels.py).

These run against ``visionrt.images`` (the one decode path shared by trainer, exporter calibration
and runtime). Per-item isolation in the runtime and the trainer is tested in test_d_serving.py and
test_c_training.py.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np
import pytest
from helpers import encode, gradient, png_with_size
from PIL import Image, ImageFile, TiffImagePlugin

from visionrt import images
from visionrt.errors import (
    ConfigError,
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="x", labels=("a", "b"), input_size=(32, 32), crop_pct=0.875)


# --- B1 decompression bombs ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # raised, then typed
@pytest.mark.parametrize("size", [(100_000, 100_000), (10_000, 10_000), (20_000, 5_000)])
def test_B1_bomb_is_refused_fast_without_allocating(size):
    bomb = png_with_size(*size)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ImageTooLargeError) as info:
            images.load_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 20 * 1024 * 1024, f"allocated {peak} bytes for a refused bomb"
    message = str(info.value)
    assert f"{size[0]}x{size[1]}" in message or "pixels" in message


def test_B1_bomb_warning_as_error_is_still_image_too_large():
    # 100 M pixels: between Pillow's warning and error thresholds. Under ``-W error`` Pillow's
    # DecompressionBombWarning is raised from Image.open; it must still come out typed.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError):
            images.load_image(png_with_size(10_000, 10_000))


def test_B1_limit_is_configurable_but_never_off():
    data = encode(Image.fromarray(gradient(100, 100)), "PNG")
    with pytest.raises(ImageTooLargeError, match="10000 pixels exceeds the limit of 5000"):
        images.load_image(data, limits=images.DecodeLimits(max_pixels=5000))
    for off in (None, 0, -1, float("inf"), True):
        with pytest.raises(ConfigError, match="cannot be switched off"):
            images.DecodeLimits(max_pixels=off)
    assert Image.MAX_IMAGE_PIXELS is not None


def test_B1_in_the_runtime_only_the_bomb_item_fails():
    items = [encode(Image.fromarray(gradient()), "PNG"), png_with_size(100_000, 100_000),
             encode(Image.fromarray(gradient()), "JPEG")]
    results = []
    for item in items:
        try:
            results.append(images.preprocess(item, SPEC).shape)
        except ImageError as exc:
            results.append(type(exc).__name__)
    assert results == [(32, 32, 3), "ImageTooLargeError", (32, 32, 3)]


# --- B2 refused formats -----------------------------------------------------------------------
def _ico() -> bytes:
    return encode(Image.new("RGB", (16, 16)), "ICO")


def _icns() -> bytes:
    return encode(Image.new("RGB", (16, 16)), "ICNS")


def _pcx() -> bytes:
    return encode(Image.new("RGB", (8, 8)), "PCX")


def _sgi() -> bytes:
    return encode(Image.new("RGB", (8, 8)), "SGI")


def _dds() -> bytes:
    return encode(Image.new("RGB", (8, 8)), "DDS")


@pytest.mark.parametrize(
    "make, fmt",
    [
        (lambda: b"SIMPLE  =                    T" + b" " * 2850, "FITS"),
        (lambda: b"BLP2" + b"\x00" * 200, "BLP"),
        (lambda: b"8BPS\x00\x01" + b"\x00" * 64, "PSD"),
        (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS"),
        (_ico, "ICO"),
        (_icns, "ICNS"),
        (_pcx, "PCX"),
        (_sgi, "SGI"),
        (_dds, "DDS"),
    ],
)
def test_B2_uncommon_formats_are_refused_before_decoding(monkeypatch, make, fmt):
    # Any refused plugin's parser running at all is a failure, not just a wrong result.
    def must_not_run(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} parsed a refused file")

    for plugin in ("FitsImagePlugin", "BlpImagePlugin", "PsdImagePlugin", "EpsImagePlugin",
                   "IcoImagePlugin", "IcnsImagePlugin", "PcxImagePlugin", "SgiImagePlugin",
                   "DdsImagePlugin"):
        module = __import__(f"PIL.{plugin}", fromlist=["_"])
        for name in dir(module):
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, ImageFile.ImageFile) and \
                    cls is not ImageFile.ImageFile and "_open" in vars(cls):
                monkeypatch.setattr(cls, "_open", must_not_run)
    with pytest.raises(UnsupportedFormatError) as info:
        images.load_image(make())
    assert fmt in str(info.value) and "not accepted" in str(info.value)
    assert info.value.actual == fmt


def test_B2_tiff_tag_abuse_is_a_typed_error():
    # SAMPLESPERPIXEL = 65280 (CVE-2022-45199 shape): must fail fast and typed, not hang.
    data = bytearray(encode(Image.new("L", (8, 8)), "TIFF"))
    ifd = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[ifd:ifd + 2], "little")
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if int.from_bytes(data[entry:entry + 2], "little") == TiffImagePlugin.SAMPLESPERPIXEL:
            data[entry + 8:entry + 10] = (65280).to_bytes(2, "little")
    t0 = time.perf_counter()
    try:
        out = images.load_image(bytes(data))
    except ImageError:
        pass
    else:  # Pillow >= 9.3 may ignore the bogus count; then the pixels must be the real ones
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert time.perf_counter() - t0 < 2.0


# --- B3 truncated files -----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_B3_truncated_image_is_per_item_error(fmt):
    data = encode(Image.fromarray(np.random.default_rng(0).integers(
        0, 256, (200, 200, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageError) as info:
        images.load_image(data[: len(data) // 2])
    if fmt in ("JPEG", "PNG"):
        assert isinstance(info.value, TruncatedImageError)
    assert "<" in str(info.value)  # names the item


def test_B3_truncated_images_are_never_padded_silently(truncated_jpeg, tmp_path):
    import visionrt.runtime  # noqa: F401 - nothing in the package may switch the flag on

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = tmp_path / "half.jpg"
    path.write_bytes(truncated_jpeg)
    with pytest.raises(TruncatedImageError, match="half.jpg"):
        images.load_image(path)


# --- B4 not an image --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, payload, fragment",
    [("empty.jpg", b"", "empty"),
     ("error_page.jpg", b"<!DOCTYPE html><html><body>403 Forbidden</body></html>",
      "not a recognised image"),
     ("notes.png", b"just some text\nnot pixels\n", "not a recognised image")],
)
def test_B4_non_image_is_a_decode_error_naming_the_file(tmp_path, name, payload, fragment):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(ImageDecodeError, match=fragment) as info:
        images.load_image(path)
    assert name in str(info.value)


def test_B4_directory_named_like_an_image(tmp_path):
    folder = tmp_path / "cat.jpg"
    folder.mkdir()
    with pytest.raises(ImageDecodeError, match="directory"):
        images.load_image(folder)
    assert folder not in images.list_images(tmp_path)


# --- B5 lying extensions ----------------------------------------------------------------------
def test_B5_format_is_decided_by_content_not_extension(tmp_path):
    tiff = tmp_path / "really_tiff.png"
    tiff.write_bytes(encode(Image.fromarray(gradient()), "TIFF"))
    np.testing.assert_array_equal(images.load_image(tiff), gradient())
    eps = tmp_path / "really_eps.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n" + b"\n" * 64)
    with pytest.raises(UnsupportedFormatError, match="EPS"):
        images.load_image(eps)
    pcx = tmp_path / "really_pcx.jpg"
    pcx.write_bytes(_pcx())
    with pytest.raises(UnsupportedFormatError, match="PCX"):
        images.load_image(pcx)


# --- B6 CMYK ----------------------------------------------------------------------------------
def _cmyk_jpeg(size=(64, 48)) -> bytes:
    return encode(Image.new("RGB", size, (220, 30, 30)).convert("CMYK"), "JPEG", quality=95)


def test_B6_adobe_cmyk_jpeg_fixture_has_the_inverted_marker():
    assert b"Adobe" in _cmyk_jpeg()  # Pillow writes Adobe APP14 (inverted CMYK)


@pytest.mark.parametrize("size", [(64, 48), (1200, 900)])  # the large one takes the draft path
def test_B6_cmyk_jpeg_is_converted_correctly_on_every_decode_path(size):
    data = _cmyk_jpeg(size)
    for out in (images.load_image(data), images.preprocess(data, SPEC)):
        r, g, b = out[out.shape[0] // 2, out.shape[1] // 2].astype(int)
        assert r > 180 and g < 80 and b < 80, (r, g, b)
