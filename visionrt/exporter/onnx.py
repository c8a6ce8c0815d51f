"""PyTorch classifier -> single-file ONNX with a dynamic batch axis and the ModelSpec inside.

With preprocessing in the graph (the default) the exported graph takes the uint8 NHWC pixels the
shared decoder produces and does the cast, mean/std normalisation and NHWC -> NCHW change itself,
so host code only decodes and resizes and trainer and runtime cannot disagree on normalisation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visionrt.bundle import TensorInfo
from visionrt.errors import ConfigError, VisionRTError
from visionrt.spec import ModelSpec

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
SPEC_KEY = "visionrt.spec"
LABELS_KEY = "labels"

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16",
                16: "bfloat16"}


class ExportError(VisionRTError):
    """The ONNX export of a model failed."""


def graph_spec(spec: ModelSpec, preprocess: str) -> ModelSpec:
    """The spec as the exported graph sees it: uint8 NHWC (``graph``) or float32 NCHW (``host``)."""
    if preprocess == "graph":
        return spec.with_(input_dtype="uint8", input_layout="NHWC")
    if preprocess == "host":
        return spec.with_(input_dtype="float32", input_layout="NCHW")
    raise ConfigError(f"preprocess = {preprocess!r}; expected 'graph' or 'host'")


def wrap_model(model: Any, spec: ModelSpec) -> Any:
    """The classifier wrapped so that its input matches ``spec.input_dtype``/``input_layout``."""
    import torch

    class GraphPreprocess(torch.nn.Module):
        """uint8 NHWC [batch, H, W, 3] -> (x - 255*mean) / (255*std), NCHW -> model -> logits.

        The arithmetic is the host's ``visionrt.images.normalize`` exactly, so graph and host
        preprocessing give the same float input to the model.
        """

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            mean = torch.tensor(spec.mean, dtype=torch.float32) * 255.0
            inv_std = 1.0 / (torch.tensor(spec.std, dtype=torch.float32) * 255.0)
            self.register_buffer("mean255", mean.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("inv_std255", inv_std.view(1, 3, 1, 1), persistent=False)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = image.permute(0, 3, 1, 2).to(torch.float32)
            return self.inner((x - self.mean255) * self.inv_std255)

    class HostPreprocess(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.inner(image)

    wrapper = GraphPreprocess(model) if spec.preprocess_in_graph else HostPreprocess(model)
    return wrapper.eval()


@contextlib.contextmanager
def export_friendly_pooling(model: Any) -> Iterator[int]:
    """Temporarily swap ``AdaptiveAvgPool2d(1)`` for an equivalent ``mean`` over H and W.

    With a symbolic batch the dynamo exporter lowers adaptive pooling to ReduceMean followed by a
    Reshape/Range/Gather ("as_strided") chain. ONNX Runtime runs it, but OpenVINO 2026.4 computes
    wrong results once the graph is quantized (int8 top-1 agreement 0.38 on Lite0), and the extra
    ops cost time. ``mean(dim=(2, 3), keepdim=True)`` is the same function and exports as one
    ReduceMean. Yields the number of swapped modules; the model is restored afterwards.
    """
    import torch

    class GlobalMean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3), keepdim=True)

    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            size = getattr(child, "output_size", None)
            if type(child) is torch.nn.AdaptiveAvgPool2d and size in (1, (1, 1)):
                swapped.append((parent, name, child))
                setattr(parent, name, GlobalMean())
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def example_input(spec: ModelSpec, batch: int = 2) -> Any:
    """A deterministic example batch in the graph's input dtype/layout."""
    import torch

    generator = torch.Generator().manual_seed(0)
    shape = spec.input_shape(batch)
    if spec.preprocess_in_graph:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    return torch.randn(shape, generator=generator)


def export_onnx(model: Any, spec: ModelSpec, path: Path, *, max_batch: int,
                opset: int | None = None) -> Path:
    """Export ``model`` (eval mode) to one ONNX file with input ``image`` and output ``logits``.

    Args:
        model: the classifier (NCHW normalised float input, logits output).
        spec: the graph spec (see :func:`graph_spec`); stored in ``metadata_props``.
        path: output file; written as a single file (no external data).
        max_batch: upper bound of the dynamic ``batch`` dimension.
        opset: ONNX opset, ``None`` for the exporter's default.

    Returns:
        ``path``.

    Raises:
        ExportError: the exporter failed or produced an unexpected graph.
    """
    import torch

    model.eval()  # inception's aux head and dropout/BN training paths are never exported
    wrapper = wrap_model(model, spec)
    batch = torch.export.Dim(BATCH_DIM, min=1, max=max(2, max_batch))
    try:
        with warnings.catch_warnings(), torch.no_grad(), export_friendly_pooling(model):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example_input(spec),), None, dynamo=True, external_data=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                dynamic_shapes={"image": {0: batch}}, optimize=True, verify=False, verbose=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"torch.onnx.export failed for {spec.arch}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          source=spec.arch, hint="run with -v for the exporter's log") from exc
    proto = simplify(program.model_proto)
    _rename_batch_dims(proto)
    set_metadata(proto, spec)
    check_io(proto, spec)
    save_model(proto, path)
    return path


def simplify(proto: Any) -> Any:
    """Fold constants and fuse ops with onnxslim; the original graph is kept if slimming fails."""
    from visionrt._optional import require

    onnxslim = require("onnxslim")
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # a slimmer bug must not fail an otherwise good export
        log.warning("onnxslim could not simplify the graph (%s); keeping it as exported", exc)
        return proto


def _rename_batch_dims(proto: Any) -> None:
    """Name the symbolic leading dim of every graph input/output ``batch``."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def set_metadata(proto: Any, spec: ModelSpec) -> None:
    """Store the ModelSpec JSON (``visionrt.spec``) and labels (``labels``) in metadata_props."""
    entries = {p.key: p.value for p in proto.metadata_props}
    entries[SPEC_KEY] = spec.to_json(indent=None)
    entries[LABELS_KEY] = json.dumps(list(spec.labels))
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_io(proto: Any, spec: ModelSpec) -> None:
    """The graph must have exactly input ``image`` and output ``logits`` of the spec's shapes."""
    inputs = [value_info(v) for v in proto.graph.input]
    outputs = [value_info(v) for v in proto.graph.output]
    want_in = TensorInfo(INPUT_NAME, spec.input_dtype, tuple(spec.input_shape(BATCH_DIM)))
    want_out = TensorInfo(OUTPUT_NAME, "float32", (BATCH_DIM, spec.num_outputs))
    if inputs != [want_in] or outputs != [want_out]:
        raise ExportError(
            f"exported graph I/O {inputs} -> {outputs} does not match the contract "
            f"{want_in} -> {want_out}; the model must take one image batch and return one "
            "logits tensor (multi-output or training-mode models are not supported)",
            expected=(want_in, want_out), actual=(inputs, outputs),
        )


def value_info(value: Any) -> TensorInfo:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in tensor.shape.dim)
    return TensorInfo(value.name, _ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type)), dims)


def io_infos(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """(inputs, outputs) of an ONNX file, for the manifest."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return (tuple(value_info(v) for v in model.graph.input),
            tuple(value_info(v) for v in model.graph.output))


def save_model(proto: Any, path: Path) -> None:
    """Save as one file; models over 2 GB cannot be single-file ONNX and are refused."""
    import onnx

    size = proto.ByteSize()
    if size >= 2**31 - 1:
        raise ExportError(f"{path.name}: the model is {size / 2**30:.1f} GB; single-file ONNX is "
                          "limited to 2 GB", source=str(path))
    onnx.save_model(proto, str(path), save_as_external_data=False)
