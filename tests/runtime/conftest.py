"""Runtime fixtures: a writable bundle copy and a fake classifier (the bundles and images they
start from are the session fixtures of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import FakeBackend, tiny_spec


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A writable copy of tiny_bundle, for tests that tamper with it."""
    import shutil

    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture
def fake_classifier():
    """A Classifier over FakeBackend (max batch 8, no buckets)."""
    from visionrt.runtime.classifier import Classifier

    clf = Classifier(FakeBackend(), tiny_spec())
    yield clf
    clf.close()
