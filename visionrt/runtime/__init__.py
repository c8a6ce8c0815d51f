"""The torch-free runtime: ``Classifier`` over ONNX Runtime, OpenVINO and native TensorRT.

Importing this package loads numpy and Pillow only; each backend imports its engine when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionrt._lazy import lazy_getattr

_LAZY = {
    "Classifier": "visionrt.runtime.classifier",
    "Prediction": "visionrt.runtime.prediction",
    "PredictionError": "visionrt.runtime.prediction",
    "TopK": "visionrt.runtime.prediction",
    "MicroBatcher": "visionrt.runtime.batcher",
    "Backend": "visionrt.runtime.base",
    "BackendConfig": "visionrt.runtime.base",
    "BackendInfo": "visionrt.runtime.base",
    "load_backend": "visionrt.runtime.base",
}

__all__ = ["Backend", "BackendConfig", "BackendInfo", "Classifier", "MicroBatcher", "Prediction",
           "PredictionError", "TopK", "load_backend"]

if TYPE_CHECKING:  # pragma: no cover
    from visionrt.runtime.base import Backend, BackendConfig, BackendInfo, load_backend
    from visionrt.runtime.batcher import MicroBatcher
    from visionrt.runtime.classifier import Classifier, Prediction, PredictionError, TopK


__getattr__ = lazy_getattr(__name__, _LAZY)
