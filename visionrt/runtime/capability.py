"""What a backend can execute on this machine, beyond being installed: the precision gaps of CPUs.

``base.backend_unavailable_reason`` says whether a backend runs here at all; this module says
whether it executes a given precision as asked. The export's parity check skips a backend with
the reason (``visionrt.exporter.verify``); loading still fails loudly (the backends check it too).
"""

from __future__ import annotations

from visionrt.runtime.base import parse_device


def precision_unavailable_reason(name: str, precision: str, device: str) -> str | None:
    """``None`` when backend ``name`` (available on ``device``) executes ``precision`` there as
    asked, else why not, e.g. ``"this CPU executes f16 as bf16"`` for OpenVINO on a CPU without
    AVX512-FP16. The capability query behind it is ``openvino.cpu_capabilities``."""
    if name.startswith("onnxruntime") and precision == "bf16":
        return "ONNX Runtime does not execute bf16"
    if name == "openvino" and parse_device(device)[0] == "cpu":
        from visionrt.runtime import openvino

        return openvino.precision_gap(precision)
    return None
