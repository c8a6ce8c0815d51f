"""The runtime feeds the model exactly the pixels the trainer's eval transform produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import tiny_spec

from visionrt.runtime.classifier import Classifier


@pytest.fixture(scope="module")
def photo_variants(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One real photo saved as EXIF-rotated JPEG, CMYK JPEG, gray, RGBA, palette, 16-bit PNG."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.chelsea())
    root = tmp_path_factory.mktemp("photos")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees left; orientation 6 turns it back
    variants = {
        "plain.jpg": (photo, {"quality": 95}),
        "exif.jpg": (photo.transpose(Image.Transpose.ROTATE_90), {"exif": exif}),
        "cmyk.jpg": (photo.convert("CMYK"), {}),
        "gray.png": (photo.convert("L"), {}),
        "rgba.png": (photo.convert("RGBA"), {}),
        "palette.png": (photo.convert("P", palette=Image.Palette.ADAPTIVE), {}),
        "gray16.png": (Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257),
                       {}),
    }
    paths = []
    for name, (image, options) in variants.items():
        image.save(root / name, **options)
        paths.append(root / name)
    return paths


def test_runtime_pixels_equal_trainer_eval_pixels(photo_variants: list[Path],
                                                  fake_classifier: Classifier) -> None:
    pytest.importorskip("torch")
    from visionrt.trainer.data import ImageDataset
    from visionrt.trainer.samples import Sample

    spec = tiny_spec().with_(input_size=(64, 64))
    fake_classifier.spec = spec
    dataset = ImageDataset([Sample(p, 0) for p in photo_variants], spec)  # eval: no augment
    for index, path in enumerate(photo_variants):
        trainer_pixels = dataset[index][0].permute(1, 2, 0).numpy()
        runtime_pixels = fake_classifier.preprocess(path)
        assert runtime_pixels.dtype == np.uint8 and runtime_pixels.shape == (64, 64, 3)
        np.testing.assert_array_equal(runtime_pixels, trainer_pixels, err_msg=path.name)


def test_exif_rotation_is_applied(photo_variants: list[Path], fake_classifier) -> None:
    plain, rotated = photo_variants[0], photo_variants[1]
    a, b = fake_classifier.preprocess(plain), fake_classifier.preprocess(rotated)
    # Both are the upright cat: close pixels (JPEG noise only), unlike a 90-degree-off image.
    turned = np.rot90(a)
    assert np.abs(a.astype(int) - b).mean() < np.abs(turned.astype(int) - b).mean() / 2
