"""Fixtures for the reliability catalogue tests (helpers live in reliability_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import encode, gradient
from PIL import Image


@pytest.fixture
def good_png() -> bytes:
    return encode(Image.fromarray(gradient()), "PNG")


@pytest.fixture
def truncated_jpeg() -> bytes:
    data = encode(Image.fromarray(gradient(200, 200)), "JPEG")
    return data[: len(data) // 2]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle with a tiny uint8-NHWC ONNX classifier (mean colour -> 4 logits), max batch 16."""
    from helpers import load_benchmark

    pytest.importorskip("onnx")
    soak = load_benchmark("soak")
    return soak.build_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture
def classifier(tiny_bundle):
    from visionrt.runtime.classifier import Classifier

    clf = Classifier.load(tiny_bundle, backend="onnxruntime", device="cpu")
    yield clf
    clf.close()
