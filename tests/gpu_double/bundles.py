"""One way for tests to put a TensorRT engine into a bundle: visionrt's own engine builder.

Works with the real TensorRT on a GPU and with the double. The engine gets the manifest record
the exporter writes and no parity record: an engine built outside ``visionrt export`` has not been
verified, so ``precision="auto"`` passes over its fp16/int8 versions (fp32 always qualifies).
"""

from __future__ import annotations

from pathlib import Path

from visionrt.bundle import Artifact, describe_artifact, load_bundle, write_manifest


def add_engine(bundle_dir: Path, precision: str, onnx_file: str, *, max_batch: int = 16,
               opt_batch: int | None = None) -> Artifact:
    """Build ``model.<precision>.engine`` from ``bundle_dir/onnx_file`` and list it in the
    manifest (replacing an engine of that precision)."""
    from visionrt.exporter.trt import EngineConfig, build_engine

    bundle = load_bundle(bundle_dir)
    engine = bundle_dir / f"model.{precision}.engine"
    record = build_engine(bundle_dir / onnx_file, engine, bundle.spec,
                          EngineConfig(max_batch=max_batch, opt_batch=opt_batch or max_batch // 2),
                          precision=precision)
    template = next((a for a in bundle.artifacts if a.file == onnx_file), None) or \
        bundle.find(precision="fp32")[0]
    artifact = describe_artifact(engine, format="tensorrt", precision=precision,
                                 inputs=template.inputs, outputs=template.outputs,
                                 batch={"min": 1, "max": max_batch}, target="tensorrt",
                                 quantization=template.quantization, tensorrt=record)
    others = [a for a in bundle.artifacts if a.file != engine.name]
    write_manifest(bundle_dir, bundle.spec, [*others, artifact], bundle.calibration,
                   bundle.source)
    return artifact


def probe_bundle(out: Path, *, size: int = 16, classes: int = 5, max_batch: int = 8) -> Path:
    """A bundle whose model is the double's probe network (per-image channel means), with an
    fp32 engine: the one engine the double also runs on a real GPU (as a CUDA kernel)."""
    from gpu_double import probe
    from visionrt.exporter.onnx import io_infos
    from visionrt.spec import ModelSpec

    out.mkdir(parents=True)
    labels = tuple(f"class{i}" for i in range(classes))
    spec = ModelSpec(arch="resnet18", labels=labels, input_size=(size, size), crop_pct=1.0)
    onnx_path = out / "model.fp32.onnx"
    onnx_path.write_bytes(probe().onnx_bytes(size, classes, metadata={
        "visionrt.spec": spec.to_json(indent=None)}))
    inputs, outputs = io_infos(onnx_path)
    fp32 = describe_artifact(onnx_path, format="onnx", precision="fp32", inputs=inputs,
                             outputs=outputs, batch={"min": 1, "max": max_batch}, target="any")
    write_manifest(out, spec, [fp32], None, {"kind": "test", "model": "gpu double probe"})
    add_engine(out, "fp32", "model.fp32.onnx", max_batch=max_batch)
    return out
