"""visionrt: fine-tune pretrained image classifiers, export verified ONNX/TensorRT, serve torch-free.

Importing this package is cheap: heavy modules load on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionrt._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "Classifier": "visionrt.runtime.classifier",
    "Prediction": "visionrt.runtime.prediction",
    "MicroBatcher": "visionrt.runtime.batcher",
    "ModelSpec": "visionrt.spec",
    "Bundle": "visionrt.bundle",
    "load_bundle": "visionrt.bundle",
    "VisionRTError": "visionrt.errors",
}

__all__ = [  # names resolved lazily by __getattr__
    "__version__", "Bundle", "Classifier", "MicroBatcher", "ModelSpec", "Prediction",
    "VisionRTError", "load_bundle",
]

if TYPE_CHECKING:  # pragma: no cover
    from visionrt.bundle import Bundle, load_bundle
    from visionrt.errors import VisionRTError
    from visionrt.runtime.batcher import MicroBatcher
    from visionrt.runtime.classifier import Classifier, Prediction
    from visionrt.spec import ModelSpec


__getattr__ = lazy_getattr(__name__, _LAZY)
