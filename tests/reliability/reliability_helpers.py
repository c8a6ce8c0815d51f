"""Helpers of the reliability catalogue tests (image builders and script loading: tests/helpers.py)."""

from __future__ import annotations

import numpy as np


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
