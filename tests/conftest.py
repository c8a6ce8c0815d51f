"""Shared fixtures: tiny generated images, data sets, bundles and runs (no downloads, no committed
data), used by more than one test folder (the CLI tests among them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_kaggle_set, write_run_dir
from PIL import Image
from runtime_helpers import tiny_spec, write_bundle


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compiled-model caches go to a temporary directory, never the user's ~/.cache: the library's
    default (the XDG cache home) and the CLI's ``VISIONRT_CACHE_DIR`` both point there."""
    import os

    cache = tmp_path_factory.mktemp("visionrt-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ["VISIONRT_CACHE_DIR"] = str(cache / "visionrt")


@pytest.fixture(scope="session")
def tiny_imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class synthetic ImageFolder, 12 images per class, 48 px (session-wide, read-only)."""
    from visionrt.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", classes=3,
                                  per_class=12, size=48, seed=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def photo() -> np.ndarray:
    """scikit-image's `chelsea` cat photo (uint8 RGB, 300x451), shipped with scikit-image."""
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.chelsea()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3-class softmax bundle, fp32 + U8S8 int8 (parity 1.0), 32 px, max batch 16 (read-only)."""
    return write_bundle(tmp_path_factory.mktemp("rt") / "bundle", tiny_spec())


@pytest.fixture(scope="session")
def binary_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sigmoid single-logit binary bundle (labels benign/malignant), fp32 only."""
    spec = tiny_spec(labels=("benign", "malignant"), activation="sigmoid")
    return write_bundle(tmp_path_factory.mktemp("rt") / "binary", spec, int8_top1=None)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small images of assorted sizes and formats."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(40, 40), (64, 48), (33, 90), (120, 80), (32, 32), (50, 70)]):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        suffix = ".png" if i % 2 else ".jpg"
        Image.fromarray(array).save(root / f"img{i}{suffix}")
    return root


@pytest.fixture(scope="session")
def kaggle_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_kaggle_set(tmp_path_factory.mktemp("kaggle"))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_imagefolder: Path) -> Path:
    """A minimal trainer run dir: random resnet10t (3 classes, 32 px) + its data."""
    pytest.importorskip("timm")
    labels = tuple(sorted(p.name for p in tiny_imagefolder.iterdir() if p.is_dir()))
    return write_run_dir(tmp_path_factory.mktemp("runs") / "run", tiny_imagefolder, labels)


@pytest.fixture
def trt_double(request: pytest.FixtureRequest):
    """TensorRT + CUDA are the test double (tests/gpu_double) for this test only; yields the
    double (``.state()``, ``.configure()``). Settings: ``@pytest.mark.gpu_double(driver=...,
    trt_version=..., devices=[...])``."""
    import gpu_double

    marker = request.node.get_closest_marker("gpu_double")
    with gpu_double.activated(**(marker.kwargs if marker else {})) as double:
        yield double
        assert not double.state().violations, double.state().violations
