"""Trainer fixtures: tiny configs, Kaggle-layout CSV sets, and one trained run shared per module."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import single_torch_thread, write_kaggle_set

TINY_ARCH = "mobilenetv3_small_050"


@pytest.fixture
def tiny_config(tiny_imagefolder: Path, tmp_path: Path):
    """Factory: a fast TrainConfig (random-init tiny net, 32 px) with overrides."""
    from visionrt.trainer.config import TrainConfig

    def make(**overrides):
        options = dict(out=tmp_path / "run", data=tiny_imagefolder, arch=TINY_ARCH,
                       weights="none", img_size=32, epochs=2, batch_size=8, lr=0.01)
        options.update(overrides)
        return TrainConfig(**options)

    return make


@pytest.fixture
def make_kaggle_set():
    """Factory: write_kaggle_set(root, patients=..., per_patient=..., size=...)."""
    return write_kaggle_set


@pytest.fixture(scope="module")
def trained_run(tiny_imagefolder: Path, tmp_path_factory: pytest.TempPathFactory):
    """One finished tiny run (2 epochs, frozen backbone, cached features)."""
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.loop import train

    config = TrainConfig(out=tmp_path_factory.mktemp("trained") / "run", data=tiny_imagefolder,
                         arch=TINY_ARCH, weights="none", img_size=32, epochs=2, batch_size=8,
                         lr=0.01)
    return train(config)


_one_torch_thread = pytest.fixture(autouse=True, scope="session")(single_torch_thread)
