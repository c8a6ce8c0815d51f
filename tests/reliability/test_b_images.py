"""Catalogue B1-B13: hostile and unusual images decode correctly or fail with a typed error.

These run against ``visionrt.images`` (the one decode path shared by trainer, exporter calibration
and runtime). Per-item isolation in the runtime and the trainer is tested in test_d_serving.py and
test_c_training.py.
"""

from __future__ import annotations

import io
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from helpers import encode, exif_oriented, gradient, png_with_size
from PIL import GifImagePlugin, Image, ImageFile, TiffImagePlugin

from visionrt import images
from visionrt.errors import (
    ConfigError,
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    InputValidationError,
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


# --- B7 16-bit --------------------------------------------------------------------------------
def test_B7_16bit_png_is_rescaled_not_clipped():
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    out = images.load_image(encode(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(out[:, :, 0], (values >> 8).astype(np.uint8))
    assert 100 < out.mean() < 155  # convert("RGB") would give an almost white image


@pytest.mark.parametrize("mode", ["I;16B", "I;16L", "I;16"])
def test_B7_16bit_tiff_byte_orders(mode):
    values = np.linspace(0, 65535, 16 * 8).reshape(8, 16).astype(np.uint16)
    order = ">u2" if mode == "I;16B" else "<u2"  # (Pillow's convert() to I;16B clips: #5991)
    image = Image.frombytes(mode, (16, 8), values.astype(order).tobytes())
    out = images.load_image(encode(image, "TIFF"))
    np.testing.assert_array_equal(out[:, :, 1], (values >> 8).astype(np.uint8))


def test_B7_minmax_rule_and_spec_records_the_rule():
    values = np.linspace(1000, 2000, 64).reshape(8, 8).astype(np.uint16)
    out = images.load_image(encode(Image.fromarray(values), "PNG"), sixteen_bit="minmax")
    assert out.min() == 0 and out.max() == 255
    spec = ModelSpec(arch="x", labels=("a",), input_size=(8, 8), sixteen_bit="minmax")
    assert ModelSpec.from_json(spec.to_json()).sixteen_bit == "minmax"
    np.testing.assert_array_equal(images.preprocess(encode(Image.fromarray(values), "PNG"),
                                                    spec), out)


# --- B8 transparency --------------------------------------------------------------------------
def _palette_trns() -> bytes:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 4, 8))
    return encode(pal, "PNG", transparency=0)


@pytest.mark.parametrize("kind", ["P+tRNS", "RGBA", "LA", "RGBA-webp"])
def test_B8_alpha_is_composited_on_the_spec_background_without_warnings(kind):
    if kind == "P+tRNS":
        data, opaque = _palette_trns(), (0, 255, 0)
    else:
        rgba = np.zeros((8, 8, 4), dtype=np.uint8)
        rgba[:, :4] = (0, 255, 0, 255)
        image = Image.fromarray(rgba, "RGBA")
        if kind == "LA":
            image, opaque = image.convert("LA"), (150, 150, 150)
        else:
            opaque = (0, 255, 0)
        fmt = "WEBP" if kind == "RGBA-webp" else "PNG"
        data = encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    spec = ModelSpec(arch="x", labels=("a",), input_size=(8, 8), resize_mode="squash",
                     background=(10, 20, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = images.preprocess(data, spec)
    assert tuple(out[4, 7]) == (10, 20, 30)  # transparent half shows the background
    np.testing.assert_allclose(out[4, 0], opaque, atol=2)


# --- B9 gray / 1-bit --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "1"])
def test_B9_gray_and_bilevel_become_three_equal_channels(mode):
    image = Image.fromarray(gradient()[:, :, 0]).convert(mode)
    out = images.load_image(encode(image, "PNG"))
    assert out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 1])
    np.testing.assert_array_equal(out[:, :, 1], out[:, :, 2])
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(image.convert("L")))


# --- B10 EXIF orientation ---------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_B10_exif_orientation_applied_in_the_shared_function(orientation):
    data, upright = exif_oriented(orientation)
    np.testing.assert_array_equal(images.load_image(data), upright)
    spec = ModelSpec(arch="x", labels=("a",), input_size=(20, 30), resize_mode="squash")
    np.testing.assert_array_equal(images.preprocess(data, spec), upright)


# --- B11 many frames --------------------------------------------------------------------------
def _frames(n):
    return [Image.new("RGB", (4, 4), (i % 256, 255 - i % 256, 0)) for i in range(n)]


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP"])
def test_B11_multi_frame_uses_frame_zero_and_never_counts_frames(monkeypatch, fmt):
    frames = _frames(300)
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])

    def counted(self):
        raise AssertionError("n_frames walks every frame of a hostile file")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(counted))
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "n_frames", property(counted))
    out = images.load_image(data)
    np.testing.assert_allclose(out[0, 0], (0, 255, 0), atol=8)


def test_B11_file_size_cap_is_checked_before_reading(tmp_path):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # sparse: costs no disk, would cost RAM if read
        handle.truncate(images.DEFAULT_MAX_BYTES + 1)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="byte limit"):
        images.load_image(huge)
    assert time.perf_counter() - t0 < 1.0


# --- B12 in-memory arrays ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((8, 8, 3), np.float64), "float64 8x8x3"),
        (np.zeros((8, 8, 3), np.int64), "int64"),
        (np.zeros((3, 8, 8), np.uint8), "CHW"),
        (np.zeros((8, 8, 1), np.uint8), "1 channels"),
        (np.zeros((8, 8, 4), np.uint8), "4 channels"),
        (np.full((8, 8, 3), np.inf, np.float32), "NaN or inf"),
        (np.full((8, 8, 3), 0.5, np.float32), "scale 0..1 floats by 255"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((2, 8, 8, 3), np.uint8), "4 dimensions"),
        (np.zeros((8, 8, 3), bool), "bool"),
    ],
)
def test_B12_bad_arrays_raise_input_validation_error_naming_the_item(array, fragment):
    with pytest.raises(InputValidationError, match=fragment) as info:
        images.validate_array(array, index=3)
    assert "item 3" in str(info.value)
    assert info.value.expected == "uint8 HxWx3"


def test_B12_good_arrays_are_returned_contiguous_and_unchanged():
    base = gradient()
    strided = base[::-1, ::2]
    out = images.validate_array(strided)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, strided)


# --- B13 extreme sizes ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 1), (2, 1500), (1500, 2), (1, 999)])
def test_B13_extreme_but_legal_sizes_decode_and_resize(size):
    data = encode(Image.new("RGB", size, (90, 120, 150)), "PNG")
    out = images.preprocess(data, SPEC)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (90, 120, 150), atol=1)


@pytest.mark.parametrize("size", [(2, 20000), (20000, 2), (1, 5000)])
def test_B13_degenerate_aspect_ratio_is_a_clear_error(size):
    data = encode(Image.new("L", size), "PNG")
    with pytest.raises(ImageDecodeError, match="aspect ratio"):
        images.load_image(data)


def test_B13_large_legal_image_resize_cost_is_bounded():
    # Only the kept crop is resampled (box=): a 6000x4000 image costs a bounded resize.
    big = np.zeros((4000, 6000, 3), dtype=np.uint8)
    out = images.resize_crop(big, SPEC)
    assert out.shape == (32, 32, 3)
    left, top, right, bottom = images.crop_box((6000, 4000), SPEC)
    assert (right - left) <= 6000 and (bottom - top) <= 4000


def test_B_any_image_error_is_a_visionrt_error():
    # The contract every caller relies on: catching ImageError is enough for files.
    for payload in (b"", b"GIF89a", b"\xff\xd8\xff", png_with_size(0, 0), io.BytesIO().getvalue()):
        with pytest.raises(ImageError):
            images.load_image(payload)


def test_B12_property_any_array_is_accepted_as_uint8_hwc3_or_named_and_refused():
    """E2: validate_array either returns a uint8 HxWx3 array or raises InputValidationError."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    dtypes = st.sampled_from([np.uint8, np.int8, np.int64, np.uint16, np.float16, np.float32,
                              np.float64, np.bool_, np.complex64])
    shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(hnp.arrays(dtypes, shapes), st.integers(0, 10))
    def check(array, index):
        try:
            out = images.validate_array(array, index=index)
        except InputValidationError as exc:
            assert f"item {index}" in str(exc)
            return
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert out.shape[0] >= 1 and out.shape[1] >= 1 and out.flags.c_contiguous
        gray = array.ndim == 2
        np.testing.assert_array_equal(out[:, :, 0], array if gray else array[:, :, 0])

    check()
