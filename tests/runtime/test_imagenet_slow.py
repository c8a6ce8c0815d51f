"""A new user's run: the ImageNet default bundle classifies real photos on every CPU backend.

Slow (exports tf_efficientnet_lite0 with its shipped ImageNet weights): ``pytest -m slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scikit-image's cat photo in every awkward encoding, plus crops for calibration."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    cat = Image.fromarray(skimage_data.chelsea())
    exif = Image.Exif()
    exif[0x0112] = 6
    variants = {
        "cat.jpg": (cat, {}), "cat_exif.jpg": (cat.transpose(Image.Transpose.ROTATE_90),
                                               {"exif": exif}),
        "cat_cmyk.jpg": (cat.convert("CMYK"), {}), "cat_gray.png": (cat.convert("L"), {}),
        "cat_rgba.png": (cat.convert("RGBA"), {}),
        "cat_palette.png": (cat.convert("P", palette=Image.Palette.ADAPTIVE), {}),
        "cat_16bit.png": (Image.fromarray(np.asarray(cat.convert("L")).astype(np.uint16) * 257),
                          {}),
    }
    paths = {}
    for name, (image, options) in variants.items():
        image.save(root / name, **options)
        paths[name] = root / name
    calib = root / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for index, name in enumerate(("chelsea", "coffee", "astronaut", "rocket", "cat") * 8):
        array = getattr(skimage_data, name)()
        h, w = array.shape[:2]
        y, x = rng.integers(0, h // 3), rng.integers(0, w // 3)
        Image.fromarray(array[y:y + 2 * h // 3, x:x + 2 * w // 3]).save(calib / f"{index}.jpg")
    paths["calib"] = calib
    return paths


@pytest.fixture(scope="module")
def imagenet_bundle(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("timm")
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export

    out = tmp_path_factory.mktemp("imagenet") / "bundle"
    export(ExportConfig(out=out, source="imagenet:tf_efficientnet_lite0",
                        precisions=("fp32", "int8"), calib=photos["calib"], calib_samples=32,
                        verify_samples=8, allow_mismatch=True))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend, precision", [
    ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
])
def test_imagenet_bundle_sees_a_cat_in_every_encoding(imagenet_bundle: Path, photos, backend,
                                                      precision) -> None:
    from visionrt.runtime.classifier import Classifier

    files = [p for name, p in photos.items() if name != "calib"]
    with Classifier.load(imagenet_bundle, backend=backend, precision=precision) as clf:
        assert clf.info()["precision"] == precision
        results = clf.predict(files, top_k=3)
    for result in results:
        assert result.ok and result.index in CAT_CLASSES, (result.input, result.label)


@pytest.mark.slow
def test_fp32_top1_is_identical_across_backends(imagenet_bundle: Path, photos) -> None:
    from visionrt.runtime.classifier import Classifier

    files = [p for name, p in photos.items() if name != "calib"]
    tops = {}
    for backend in ("onnxruntime", "openvino"):
        with Classifier.load(imagenet_bundle, backend=backend, precision="fp32") as clf:
            tops[backend] = [r.index for r in clf.predict(files)]
    assert tops["onnxruntime"] == tops["openvino"]
