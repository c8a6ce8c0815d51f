"""The model that runs inside Triton imports visionrt's runtime only (never torch, the exporter,
the trainer, the CLI, bench or tritonclient), and its repository entry is what Triton expects."""

from __future__ import annotations

import subprocess
import sys

from visionrt.exporter.triton_python import MODEL_PY

FORBIDDEN = ("torch", "visionrt.exporter", "visionrt.trainer", "visionrt.cli", "visionrt.bench",
             "visionrt.serve.server", "visionrt.serve.service", "tritonclient", "onnx")


def test_triton_model_imports_only_the_runtime():
    code = ("import sys, types\n"
            "sys.modules['triton_python_backend_utils'] = types.ModuleType('pb_utils')\n"
            f"exec({MODEL_PY!r})\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or "
            f"any(m.startswith(f + '.') or m == f for f in {FORBIDDEN!r})]\n"
            "assert not bad, bad\n"
            "assert 'visionrt.runtime.classifier' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_model_file_is_the_import_of_the_packaged_model():
    namespace: dict = {}
    exec(MODEL_PY, namespace)  # noqa: S102 - our own constant
    from visionrt.serve.triton_model import TritonPythonModel

    assert namespace["TritonPythonModel"] is TritonPythonModel
