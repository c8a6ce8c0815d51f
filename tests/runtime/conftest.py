"""Runtime fixtures: tiny bundles, images and a fake classifier (helpers in runtime_helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import FakeBackend, tiny_spec, write_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3-class softmax bundle, fp32 + U8S8 int8 (parity 1.0), 32 px, max batch 16 (read-only)."""
    return write_bundle(tmp_path_factory.mktemp("rt") / "bundle", tiny_spec())


@pytest.fixture(scope="session")
def binary_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sigmoid single-logit binary bundle (labels benign/malignant), fp32 only."""
    spec = tiny_spec(labels=("benign", "malignant"), activation="sigmoid")
    return write_bundle(tmp_path_factory.mktemp("rt") / "binary", spec, int8_top1=None)


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A writable copy of tiny_bundle, for tests that tamper with it."""
    import shutil

    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


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


@pytest.fixture
def fake_classifier():
    """A Classifier over FakeBackend (max batch 8, no buckets)."""
    from visionrt.runtime.classifier import Classifier

    clf = Classifier(FakeBackend(), tiny_spec())
    yield clf
    clf.close()
