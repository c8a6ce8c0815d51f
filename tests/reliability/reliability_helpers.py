"""Helpers of the reliability catalogue tests (image builders and script loading: tests/helpers.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def alone(classifier, image) -> np.ndarray:
    """``classifier``'s logits for ``image`` run on its own: the reference a batched row must equal."""
    return classifier(classifier.preprocess(image)[None])[0]


def solid(key: int, size: int = 32) -> np.ndarray:
    """A uint8 image whose red channel is ``key`` (identifies it in a recorded batch)."""
    return np.full((size, size, 3), (key, 100, 200), dtype=np.uint8)


class RecordingClassifier:
    """Wraps a Classifier for the micro-batcher: records batches, can block or fail on demand.

    ``gate`` (an Event) must be set for a batch to run; ``entered`` is set when one arrives;
    ``fail`` (a predicate on the batch) makes the call raise ``error``.
    """

    def __init__(self, classifier) -> None:
        import threading

        self._classifier = classifier
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[int]] = []
        self.fail = None
        self.error: BaseException = RuntimeError("backend exploded")

    def __getattr__(self, name):
        return getattr(self._classifier, name)

    def __call__(self, batch):
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        self.batches.append([int(row[0, 0, 0]) for row in batch])
        if self.fail is not None and self.fail(batch):
            raise self.error
        return self._classifier(batch)


# --- training runs (catalogue C) ----------------------------------------------------------------
ARCH = "test_efficientnet"
ROOT = Path(__file__).resolve().parents[2]  # the repository


def train_config(data: Path, out: Path, **overrides):
    """A fast TrainConfig: timm's random-init ``test_efficientnet`` at 32 px, 2 epochs."""
    from visionrt.trainer.config import TrainConfig

    options = dict(out=out, data=data, arch=ARCH, weights="none", img_size=32, epochs=2,
                   batch_size=8, lr=0.01, freeze="none", cache_features="off", seed=0)
    options.update(overrides)
    return TrainConfig(**options)


def no_tmp_left(run_dir: Path) -> None:
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers


def history_epochs(run_dir: Path) -> list[int]:
    return [row["epoch"] for row in json.loads((run_dir / "history.json").read_text())]


class Interrupt(Exception):
    """Raised from a progress callback to stop a run at a chosen point."""


def stop_at(epoch: int, event: str = "epoch_start"):
    def callback(name, info):
        if name == event and info.get("epoch") == epoch:
            raise Interrupt(f"{event} {epoch}")
    return callback


def interrupted_copy(runs: dict, data: Path, tmp_path: Path):
    """A private copy of the interrupted run and its config (``out`` is not fingerprinted)."""
    out = tmp_path / "run"
    shutil.copytree(runs["interrupted"], out)
    return train_config(data, out, epochs=2)
