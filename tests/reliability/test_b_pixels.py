"""Catalogue B7-B13: pixel formats and shapes (16-bit, alpha, gray, EXIF orientation, frames,
arrays, extreme sizes) decode to the same uint8 RGB everywhere; B1-B6 are in test_b_images.py.
"""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
import pytest
from helpers import encode, exif_oriented, gradient, png_with_size
from PIL import GifImagePlugin, Image, TiffImagePlugin

from visionrt import images
from visionrt.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    InputValidationError,
)
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="x", labels=("a", "b"), input_size=(32, 32), crop_pct=0.875)


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
