"""The exporter: a trained run or a pretrained backbone -> a verified bundle.

Stages are plain functions chained in exactly one place, :func:`visionrt.exporter.pipeline.export`:

    onnx.export_onnx          torch model (+ preprocessing wrapper) -> model.fp32.onnx
    precision.convert_fp16    fp32 ONNX -> model.fp16.onnx (fp32 I/O, sensitive ops kept fp32)
    precision.quantize_int8   fp32 ONNX + calibration images -> model.int8.onnx (U8S8, CPU)
                              and model.int8.trt.onnx (S8S8 symmetric, TensorRT), one calibration
    verify.verify_artifact    every artifact through ONNX Runtime (+ OpenVINO) vs PyTorch: a gate
    trt.build_engine          ONNX -> TensorRT engine (GPU only)
    triton.write_triton_repo  Triton model repository (config.pbtxt, labels, 1/model.onnx)

Importing this package is cheap; torch and onnx load inside the stage modules.
"""

from __future__ import annotations

from visionrt._lazy import lazy_getattr

_LAZY = {
    "ExportConfig": "visionrt.exporter.config",
    "ExportResult": "visionrt.exporter.pipeline",
    "export": "visionrt.exporter.pipeline",
    "export_model": "visionrt.exporter.pipeline",
    "ParityReport": "visionrt.exporter.verify",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
