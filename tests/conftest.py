"""Shared fixtures: tiny generated images and data sets (no downloads, no committed data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compiled-model caches go to a temporary directory, never the user's ~/.cache."""
    import os

    os.environ["VISIONRT_CACHE_DIR"] = str(tmp_path_factory.mktemp("visionrt-cache"))


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
