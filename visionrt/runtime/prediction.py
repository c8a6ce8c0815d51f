"""What the classifier returns: one Prediction (or PredictionError) per input, from logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionrt.spec import ModelSpec


@dataclass(frozen=True)
class TopK:
    index: int
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """The classification of one input: top-1 ``label``/``index``/``score`` and the top-k."""

    input: str
    label: str
    index: int
    score: float
    top_k: tuple[TopK, ...]
    ok = True

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "top_k": [
            {"index": t.index, "label": t.label, "score": t.score} for t in self.top_k]}


@dataclass(frozen=True)
class PredictionError:
    """An input that could not be classified; ``error`` says why, ``kind`` is the error class."""

    input: str
    error: str
    kind: str = "VisionRTError"
    ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "error": self.error}


def to_prediction(name: str, probs: np.ndarray, labels: Sequence[str], top_k: int) -> Prediction:
    """A Prediction from one row of probabilities (ties keep the lower index first)."""
    order = np.argsort(-probs, kind="stable")[: min(top_k, len(labels))]
    ranked = tuple(TopK(int(i), labels[int(i)], float(probs[i])) for i in order)
    best = ranked[0]
    return Prediction(name, best.label, best.index, best.score, ranked)


def activate(logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Raw logits -> class probabilities (softmax, or [1-p, p] for a sigmoid binary head)."""
    logits = np.asarray(logits, dtype=np.float32)
    if spec.output_activation == "sigmoid":
        positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
