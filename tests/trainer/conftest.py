"""Trainer fixtures: tiny configs, a Kaggle-layout CSV set, and one trained run shared per module."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def write_kaggle_set(root: Path, patients: int = 12, per_patient: int = 3,
                     size: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A SIIM-ISIC-like set: train.csv (image_name, patient_id, target) + images/<name>.jpg.

    Positives are bright blobs on a dark background, negatives dark blobs; every patient has one
    target value so a leaky split would be visible.
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        target = p % 3 == 0  # a third of the patients are positive (imbalanced)
        for i in range(per_patient):
            name = f"ISIC_{p:03d}{i:02d}"
            pixels = rng.normal(60, 20, (size, size, 3))
            cy, cx = rng.integers(10, size - 10, 2)
            yy, xx = np.mgrid[0:size, 0:size]
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(30, 80)
            pixels[blob] = 220 if target else 110
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(images / f"{name}.jpg")
            rows.append({"image_name": name, "patient_id": f"IP_{p:04d}", "sex": "male",
                         "target": int(target)})
    csv_path = root / "train.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path, images


@pytest.fixture
def make_kaggle_set():
    """Factory: write_kaggle_set(root, patients=..., per_patient=..., size=...)."""
    return write_kaggle_set


@pytest.fixture(scope="session")
def kaggle_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_kaggle_set(tmp_path_factory.mktemp("kaggle"))


@pytest.fixture(scope="module")
def trained_run(tiny_imagefolder: Path, tmp_path_factory: pytest.TempPathFactory):
    """One finished tiny run (2 epochs, frozen backbone, cached features)."""
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.loop import train

    config = TrainConfig(out=tmp_path_factory.mktemp("trained") / "run", data=tiny_imagefolder,
                         arch=TINY_ARCH, weights="none", img_size=32, epochs=2, batch_size=8,
                         lr=0.01)
    return train(config)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP spin contention (10x)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
