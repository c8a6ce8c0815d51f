"""images.py: every common and hostile image file decodes correctly or fails with a typed error."""

import io
import time

import numpy as np
import pytest
from helpers import encode, exif_oriented, gradient
from PIL import Image

from visionrt import _imagefile, images
from visionrt.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    InputValidationError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from visionrt.spec import ModelSpec

SPEC = ModelSpec(arch="x", labels=("a", "b"), input_size=(32, 32), crop_pct=0.875)


def test_rgb_png_round_trip_is_exact():
    arr = gradient()
    out = images.load_image(encode(Image.fromarray(arr), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_paths_work(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(gradient()).save(path)
    np.testing.assert_array_equal(images.load_image(path), gradient())
    np.testing.assert_array_equal(images.load_image(str(path)), gradient())


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr", "LA", "RGBA", "I;16", "I", "F"])
def test_every_mode_becomes_rgb_uint8(mode):
    base = Image.fromarray(gradient())
    image = base.convert(mode) if mode not in ("I;16", "I", "F") else base.convert("L").convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "YCbCr", "I", "F", "LA") else "PNG"
    if mode == "YCbCr":
        fmt = "JPEG"
    out = images.load_image(encode(image, fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_gray_is_copied_to_three_channels():
    gray = gradient()[:, :, 0]
    out = images.load_image(encode(Image.fromarray(gray, "L"), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_sixteen_bit_is_rescaled_not_clipped():
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    out = images.load_image(encode(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(out[:, :, 0], (values >> 8).astype(np.uint8))
    assert out.max() == 255 and out.min() == 0  # a plain convert("RGB") would clip to ~all 255
    minmax = images.load_image(encode(Image.fromarray(values // 4), "PNG"), sixteen_bit="minmax")
    assert minmax.max() == 255


def test_alpha_is_composited_on_the_background():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top opaque red, bottom fully transparent
    data = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    out = images.load_image(data, background=(0, 0, 255))
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[9, 9]) == (0, 0, 255)


def test_palette_with_transparency():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 4, 8))
    data = encode(pal, "PNG", transparency=0)
    out = images.load_image(data, background=(255, 255, 255))
    assert tuple(out[0, 0]) == (0, 255, 0)
    assert tuple(out[0, 7]) == (255, 255, 255)


def test_cmyk_jpeg_colours_are_right():
    red = Image.new("RGB", (16, 16), (220, 30, 30)).convert("CMYK")
    out = images.load_image(encode(red, "JPEG", quality=95))
    r, g, b = out[8, 8].astype(int)
    assert r > 180 and g < 80 and b < 80


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    # The stored pixels are the upright image transformed by the inverse of `orientation`;
    # decoding must give back the upright image.
    data, upright = exif_oriented(orientation)
    np.testing.assert_array_equal(images.load_image(data), upright)


def test_truncated_file_is_reported():
    data = encode(Image.fromarray(gradient(200, 200)), "JPEG")
    with pytest.raises(TruncatedImageError, match="truncated") as caught:
        images.load_image(data[: len(data) // 2])
    message = str(caught.value)  # one cause, stated once, and a remedy that fits a photo
    assert message.count("truncated") == 1 and "re-export" not in message
    assert message.endswith("copy or download it again")


@pytest.mark.parametrize("pillow_text, expected", [
    ("image file is truncated (10 bytes not processed)",
     "image file is truncated (10 bytes not processed)"),
    ("image file is truncated", "image file is truncated"),
    ("broken data stream when reading image file",
     "image file is truncated (broken data stream when reading image file)"),
])
def test_truncation_is_stated_once(pillow_text, expected):
    assert _imagefile._truncation(OSError(pillow_text)) == expected


@pytest.mark.parametrize(
    "payload, fragment",
    [(b"", "empty"), (b"<html>404 not found</html>", "not a recognised image"),
     (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not a recognised")],
)
def test_non_images_are_reported(payload, fragment):
    with pytest.raises(ImageDecodeError, match=fragment):
        images.load_image(payload)


def test_directory_and_missing_file(tmp_path):
    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    with pytest.raises(ImageDecodeError, match="is a directory"):
        images.load_image(folder)
    with pytest.raises(ImageDecodeError, match="file not found"):
        images.load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("payload, fmt", [(b"%!PS-Adobe-3.0 EPSF-3.0\n", "EPS"),
                                          (b"SIMPLE  =                    T", "FITS"),
                                          (b"8BPS\x00\x01", "PSD"),
                                          (b"\x00\x00\x01\x00\x01\x00", "ICO")])
def test_refused_formats_are_named(payload, fmt):
    with pytest.raises(UnsupportedFormatError, match=fmt):
        images.load_image(payload + b"\x00" * 64)


def test_extension_lies_are_decided_by_content(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.fromarray(gradient()), "JPEG"))
    assert images.load_image(path).shape == (30, 40, 3)


def test_decompression_bomb_is_refused_fast_without_allocating():
    bomb = encode(Image.new("L", (1, 1)), "PNG")
    # Patch the IHDR width/height to 100k x 100k (10 G pixels); CRC errors are ignored by Pillow
    # for IHDR only when we fix it, so recompute it.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    start = bomb.index(b"IHDR") - 4
    bomb = bomb[:start] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + \
        bomb[start + 25:]
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        images.load_image(bomb)
    assert time.perf_counter() - t0 < 1.0


def test_pixel_limit_is_configurable_but_kept():
    data = encode(Image.fromarray(gradient(100, 100)), "PNG")
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        images.load_image(data, limits=images.DecodeLimits(max_pixels=5000))
    with pytest.raises(ImageTooLargeError, match="byte limit"):
        images.load_image(data, limits=images.DecodeLimits(max_bytes=10))


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = images.load_image(buf.getvalue())
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50


@pytest.mark.parametrize("size", [(1, 1), (2, 1500), (1500, 2), (31, 33)])
def test_extreme_sizes_resize_to_the_input(size):
    arr = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    out = images.resize_crop(arr, SPEC)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 128) <= 1


def test_aspect_ratio_beyond_limit_is_reported():
    arr = encode(Image.new("RGB", (5000, 2)), "PNG")
    with pytest.raises(ImageDecodeError, match="aspect ratio"):
        images.load_image(arr)


def test_resize_crop_matches_resize_then_center_crop():
    # box-resize of the kept region == resize whole image, then centre crop (up to resampling
    # at the border): check against Pillow on an image whose crop lands on whole pixels.
    spec = ModelSpec(arch="x", labels=("a",), input_size=(32, 32), crop_pct=0.5,
                     interpolation="nearest")
    arr = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    ours = images.resize_crop(arr, spec)
    full = np.asarray(Image.fromarray(arr).resize((96, 64), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(ours, full[16:48, 32:64])


def test_preprocess_uses_draft_for_large_jpegs_and_is_deterministic(photo):
    big = Image.fromarray(photo).resize((1800, 1200))
    data = encode(big, "JPEG", quality=90)
    a = images.preprocess(data, SPEC)
    b = images.preprocess(data, SPEC)
    assert a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, b)


def test_normalize_matches_the_formula():
    spec = ModelSpec(arch="x", labels=("a",), input_size=(8, 8), mean=(0.5, 0.4, 0.3),
                     std=(0.2, 0.25, 0.5))
    batch = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = images.normalize(batch, spec)
    expected = (batch / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), atol=1e-5)
    assert out.dtype == np.float32 and out.shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((4, 4, 3), np.float64), "float64"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((3, 4, 4), np.uint8), "CHW"),
        (np.zeros((4, 4, 4), np.uint8), "4 channels"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4,), np.uint8), "1 dimensions"),
    ],
)
def test_bad_arrays_are_named(array, fragment):
    with pytest.raises(InputValidationError, match=fragment) as info:
        images.validate_array(array, index=7)
    assert "item 7" in str(info.value)


def test_gray_array_is_accepted():
    out = images.load_image(np.zeros((5, 6), np.uint8))
    assert out.shape == (5, 6, 3)
