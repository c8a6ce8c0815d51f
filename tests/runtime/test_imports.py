"""The runtime is torch-free: importing it, and running `visionrt predict`, never loads torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNTIME_MODULES = [
    "visionrt.runtime", "visionrt.runtime.base", "visionrt.runtime.classifier",
    "visionrt.runtime.batcher", "visionrt.runtime.ort", "visionrt.runtime.openvino",
    "visionrt.runtime.trt", "visionrt.runtime._cuda", "visionrt.runtime._select",
    "visionrt.runtime.submission",
]
FORBIDDEN = ("torch", "torchvision", "timm", "visionrt.trainer", "visionrt.exporter",
             "visionrt.cli")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_runtime_imports_nothing_heavy_or_upstream() -> None:
    code = (f"import importlib, sys\nfor m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or "
            f"any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
            "assert not bad, bad\n"
            "assert 'onnxruntime' not in sys.modules and 'openvino' not in sys.modules\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_predict_runs_where_torch_cannot_be_imported(tiny_bundle: Path, image_dir: Path) -> None:
    # sys.modules[name] = None makes `import name` raise ImportError: an environment without torch.
    code = ("import sys\n"
            "for name in ('torch', 'torchvision', 'timm'): sys.modules[name] = None\n"
            "from visionrt.runtime.classifier import Classifier\n"
            f"clf = Classifier.load({str(tiny_bundle)!r})\n"
            f"assert all(p.ok for p in clf.predict({str(image_dir)!r}))\n"
            "from visionrt.cli import main\n"
            f"sys.argv = ['visionrt', 'predict', {str(tiny_bundle)!r}, {str(image_dir)!r}]\n"
            "main()\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "6 classified, 0 failed" in result.stdout
    assert "torch" not in result.stderr
