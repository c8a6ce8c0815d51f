"""A Triton Inference Server model repository from a bundle artifact.

    REPO/<name>/config.pbtxt     platform, max_batch_size, I/O without the batch axis, dynamic
                                 batching, instance group, label file
    REPO/<name>/labels.txt       one class name per line (Triton's label_filename)
    REPO/<name>/spec.json        the ModelSpec (preprocessing clients must apply)
    REPO/<name>/1/model.onnx     or model.plan for a TensorRT engine

The text follows Triton's ModelConfig protobuf (model_config.proto); a test parses it with
``google.protobuf.text_format`` against the schema shipped in ``tritonclient``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from visionrt.bundle import Artifact, staging_dir
from visionrt.errors import ConfigError
from visionrt.spec import ModelSpec

_TRITON_DTYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32", "float16": "TYPE_FP16"}
QUEUE_DELAY_US = 2000


@dataclass(frozen=True)
class TritonModel:
    """Where the model went and what Triton will load."""

    directory: Path
    platform: str
    model_file: Path


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 4 up to ``max_batch`` (Triton forms these batches when it can)."""
    sizes = [b for b in (4, 8, 16, 32, 64, 128) if b <= max_batch]
    return sizes or [max_batch]


def config_pbtxt(name: str, spec: ModelSpec, artifact: Artifact, *, platform: str,
                 instance_kind: str) -> str:
    """The text of ``config.pbtxt`` for ``artifact``."""
    (inp,), (out,) = artifact.inputs, artifact.outputs
    in_dims = ", ".join(str(d) for d in inp.shape[1:])
    out_dims = ", ".join(str(d) for d in out.shape[1:])
    preferred = ", ".join(str(b) for b in preferred_batch_sizes(artifact.max_batch))
    # Triton's label file maps output indices to names: a single sigmoid logit has no such map.
    labels = '\n    label_filename: "labels.txt"' if spec.output_activation == "softmax" else ""
    return f"""name: "{name}"
platform: "{platform}"
max_batch_size: {artifact.max_batch}
input [
  {{
    name: "{inp.name}"
    data_type: {_TRITON_DTYPES[inp.dtype]}
    dims: [ {in_dims} ]
  }}
]
output [
  {{
    name: "{out.name}"
    data_type: {_TRITON_DTYPES[out.dtype]}
    dims: [ {out_dims} ]{labels}
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {QUEUE_DELAY_US}
}}
instance_group [
  {{
    count: 1
    kind: {instance_kind}
  }}
]
parameters {{
  key: "visionrt_preprocess"
  value: {{ string_value: "{'graph' if spec.preprocess_in_graph else 'host'}" }}
}}
"""


def write_triton_repo(repo: Path, name: str, bundle_dir: Path, spec: ModelSpec,
                      artifact: Artifact, *, overwrite: bool = False) -> TritonModel:
    """Copy ``artifact`` from ``bundle_dir`` into ``repo/name`` (written atomically).

    Raises:
        ConfigError: the artifact's I/O has a dtype Triton cannot describe.
        BundleError: ``repo/name`` exists (without ``overwrite``) or is not writable.
    """
    if artifact.format == "tensorrt":
        platform, filename, kind = "tensorrt_plan", "model.plan", "KIND_GPU"
    else:
        platform, filename = "onnxruntime_onnx", "model.onnx"
        kind = "KIND_CPU" if artifact.target == "cpu" else "KIND_AUTO"
    for tensor in (*artifact.inputs, *artifact.outputs):
        if tensor.dtype not in _TRITON_DTYPES:
            raise ConfigError(f"{artifact.file}: tensor {tensor.name} has dtype {tensor.dtype}, "
                              "which this Triton writer does not support")
    target = repo / name
    with staging_dir(target, overwrite=overwrite) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(bundle_dir / artifact.file, tmp / "1" / filename)
        (tmp / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
        spec.save(tmp / "spec.json")
        (tmp / "config.pbtxt").write_text(
            config_pbtxt(name, spec, artifact, platform=platform, instance_kind=kind),
            encoding="utf-8")
    return TritonModel(target, platform, target / "1" / filename)
