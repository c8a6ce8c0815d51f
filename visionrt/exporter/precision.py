"""Precision lives in the graph: fp16 conversion and int8 QDQ quantization of the fp32 ONNX.

* fp16: ONNX Runtime's float16 converter with fp32 inputs/outputs kept; the uint8 -> float
  preprocessing chain and numerically sensitive ops (Resize, Softmax, norms, Exp/Log/Pow/Sqrt) stay
  fp32.
* int8: static QDQ with per-channel weights, calibrated once on real images; the calibration
  ranges are reused for two graphs: U8S8 (uint8 activations, what ONNX Runtime's CPU kernels run
  fastest) and S8S8 symmetric (zero points of 0, what TensorRT requires). The preprocessing, the
  classifier head and (by default) the stem chain stay float in both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.errors import VisionRTError
from visionrt.exporter.onnx import INPUT_NAME, save_model
from visionrt.exporter.rounding import RoundingOptions

log = logging.getLogger(__name__)

# Ops the fp16 graph keeps in fp32, on top of the converter's own block list.
FP16_KEEP_FP32_OPS = ("Resize", "Upsample", "Softmax", "LogSoftmax", "LayerNormalization",
                      "InstanceNormalization", "Exp", "Log", "Pow", "Sqrt", "Reciprocal")
# Elementwise ops that make up the in-graph preprocessing (uint8 NHWC -> normalised NCHW).
PREPROCESS_OPS = ("Transpose", "Cast", "Sub", "Mul", "Div", "Add")

SCHEMES = {
    # scheme: (activation type, symmetric activations, target)
    "U8S8": ("QUInt8", False, "cpu"),
    "S8S8": ("QInt8", True, "tensorrt"),
}


class QuantizationError(VisionRTError):
    """fp16 conversion or int8 quantization failed."""


@dataclass(frozen=True)
class QuantizedGraph:
    """One int8 artifact written by :func:`quantize_int8`."""

    path: Path
    scheme: str
    target: str
    record: dict[str, Any]


def preprocess_nodes(proto: Any) -> list[str]:
    """Names of the nodes that turn the uint8 ``image`` input into the normalised float tensor.

    Walks forward from the graph input through elementwise ops whose other inputs are constants;
    stops at the first real layer (Conv, ...). Empty for host-preprocessed graphs.
    """
    graph = proto.graph
    constants = {init.name for init in graph.initializer}
    constants.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    frontier, names = {INPUT_NAME}, []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if (node.op_type in PREPROCESS_OPS and any(i in frontier for i in inputs)
                and all(i in frontier or i in constants for i in inputs)):
            names.append(node.name)
            frontier.update(node.output)
    is_uint8_input = any(v.name == INPUT_NAME and v.type.tensor_type.elem_type == 2
                         for v in graph.input)
    return names if is_uint8_input else []


def head_nodes(proto: Any) -> list[str]:
    """Names of the classifier head: from the graph output back to its Gemm/MatMul/Conv.

    Kept in float for int8: quantizing the logits to 8 bits (ORT quantizes a Gemm's output)
    rounds close class scores onto the same step and flips top-1 on ~1000-class models, while the
    head is a negligible share of the compute.
    """
    producers = {o: n for n in proto.graph.node for o in n.output}
    names, pending = [], [o.name for o in proto.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in names:
            continue
        names.append(node.name)
        if node.op_type not in ("Gemm", "MatMul", "Conv"):
            pending.extend(i for i in node.input if i in producers)
    return names


def convert_fp16(src: Path, dst: Path) -> Path:
    """Write an fp16 copy of ``src`` with fp32 I/O and the preprocessing kept in fp32.

    Raises:
        QuantizationError: the converter failed.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    blocked_nodes = preprocess_nodes(model)
    try:
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32_OPS],
            node_block_list=blocked_nodes,
        )
    except Exception as exc:  # the converter raises assorted types on unusual graphs
        raise QuantizationError(f"fp16 conversion of {src.name} failed: {exc}",
                                source=str(src)) from exc
    save_model(converted, dst)
    return dst


class CalibrationReader:
    """An ONNX Runtime calibration data reader over preprocessed images, ``batch`` at a time.

    ORT's ``CalibrationDataReader`` accepts any object with ``get_next`` (its ``__subclasshook__``).
    """

    def __init__(self, images: np.ndarray, batch: int) -> None:
        self.images = images
        self.batch = batch
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch):
            yield {INPUT_NAME: np.ascontiguousarray(self.images[start:start + self.batch])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


@dataclass(frozen=True)
class Int8Recipe:
    """How :func:`quantize_int8` calibrates, rounds and (optionally) mixes precisions.

    Attributes:
        method: ``minmax`` | ``entropy`` | ``percentile`` (ONNX Runtime's calibrators).
        batch: images per calibration step.
        rounding: weight rounding before ONNX Runtime quantizes (None: its own round-to-nearest).
        target: top-1 agreement with fp32 the U8S8 graph must reach on the calibration images;
            chains of layers stay in float until it does (None: no search).
        max_float_chains: at most this many chains stay in float.
        float_stem: keep the stem chain (the first conv on the image and the depthwise conv after
            it, :func:`visionrt.exporter.mixed.stem_chain`) in float, like the head: on
            EfficientNet-Lite/MobileNet it holds a large share of the int8 graph's activation
            error at a small share of its compute (benchmarks/README.md, int8 recipes).
    """

    method: str = "minmax"
    batch: int = 8
    rounding: RoundingOptions | None = None
    target: float | None = None
    max_float_chains: int = 4
    float_stem: bool = True


def default_float_nodes(proto: Any, float_stem: bool) -> tuple[list[str], list[str]]:
    """Nodes every int8 graph keeps in float: (the preprocessing and the head, the stem chain's
    other nodes when ``float_stem``).

    The stem stays float only when it holds at most a third of the graph's convolutions: on a
    small network the stem is most of the network, and keeping it float would leave little int8.
    """
    from visionrt.exporter.mixed import stem_chain

    names = preprocess_nodes(proto) + head_nodes(proto)
    ops = {n.name: n.op_type for n in proto.graph.node}
    stem = stem_chain(proto) if float_stem else []
    stem_convs = sum(1 for n in stem if ops[n] == "Conv")
    if 3 * stem_convs > sum(1 for op in ops.values() if op == "Conv"):
        stem = []
    return names, [n for n in stem if n not in names]


def quantize_int8(src: Path, outputs: dict[str, Path], images: np.ndarray,
                  recipe: Int8Recipe) -> list[QuantizedGraph]:
    """Calibrate ``src`` once on ``images`` and write one QDQ graph per scheme.

    Args:
        src: the fp32 ONNX file.
        outputs: scheme (``"U8S8"``/``"S8S8"``) -> output path.
        images: calibration batch in the graph's input dtype/layout (uint8 NHWC or float NCHW).
        recipe: calibration method, weight rounding and mixed-precision target.

    Returns:
        One :class:`QuantizedGraph` per requested scheme, with its manifest ``quantization`` record
        (which nodes stayed in float, and why, under ``mixed_precision``).

    Raises:
        QuantizationError: calibration or quantization failed.
    """
    unknown = sorted(set(outputs) - set(SCHEMES))
    if unknown:
        raise QuantizationError(f"unknown int8 schemes {unknown}; expected {sorted(SCHEMES)}")
    if recipe.method != "minmax" and len(images) % recipe.batch:
        # ORT's histogram calibrators (entropy, percentile) need equal-sized batches: the largest
        # batch up to the requested one that divides the images, so that every image is used.
        batch = max(b for b in range(1, recipe.batch + 1) if len(images) % b == 0)
        recipe = replace(recipe, batch=batch)
    with tempfile.TemporaryDirectory(prefix="visionrt-quant-") as tmp:
        job = _Job(_prepare(src, Path(tmp) / "prepared.onnx"), images, recipe, Path(tmp))
        if recipe.rounding is not None:
            job.round_weights()
        graphs = []
        for scheme, path in outputs.items():  # each scheme searches its own float chains
            mixed_record = job.mixed_precision(src, scheme) if recipe.target is not None else None
            graphs.append(job.quantize(path, scheme))
            if mixed_record is not None:
                graphs[-1].record["mixed_precision"] = mixed_record
    for graph in graphs:
        if job.rounding_record:
            graph.record["weight_rounding"] = job.rounding_record
    return graphs


class _Job:
    """One int8 quantization: the graph the quantizer reads, its calibration, the float nodes."""

    def __init__(self, graph: Path, images: np.ndarray, recipe: Int8Recipe, tmp: Path) -> None:
        self.graph, self.images, self.recipe, self.tmp = graph, images, recipe, tmp
        self.reader = CalibrationReader(images, recipe.batch)  # duck-typed CalibrationDataReader
        self.cache = tmp / "ranges.json"  # one calibration, reused by every graph written
        self.float_nodes: list[str] = []
        self.rounding_record: dict[str, Any] = {}
        self.reference: np.ndarray | None = None  # fp32 logits on the calibration images

    def round_weights(self) -> None:
        from visionrt.exporter.rounding import round_weights

        assert self.recipe.rounding is not None
        rounded = self.tmp / "rounded.onnx"
        try:
            self.rounding_record = round_weights(self.graph, rounded, self.images,
                                                 self.recipe.rounding,
                                                 skip=frozenset(self._default_excluded()))
        except Exception as exc:
            raise QuantizationError(f"weight rounding ({self.recipe.rounding.mode}) of "
                                    f"{self.graph.name} failed: {type(exc).__name__}: {exc}",
                                    source=str(self.graph)) from exc
        self.graph = rounded

    def mixed_precision(self, fp32: Path, scheme: str) -> dict[str, Any]:
        """Search the float chains of ``scheme``'s graph (left in ``self.float_nodes``)."""
        import onnx

        from visionrt.exporter import mixed

        if self.reference is None:
            self.reference = _run_ort(fp32, self.images)
        reference = self.reference
        excluded = set(self._default_excluded())  # read the graph once, not once per chain
        candidates = [c for c in mixed.chains(onnx.load(str(self.graph), load_external_data=False))
                      if not set(c) & excluded]
        searched = self.tmp / "search.onnx"

        def build(nodes: Sequence[str]) -> Path:
            self.float_nodes = list(nodes)
            return self.quantize(searched, scheme).path

        def measure(path: Path) -> mixed.Score:
            return mixed.score(reference, _run_ort(path, self.images))

        assert self.recipe.target is not None
        result = mixed.search(build, measure, candidates, target=self.recipe.target,
                              max_chains=self.recipe.max_float_chains)
        self.float_nodes = result.float_nodes
        record = result.to_record()
        if result.float_chains:
            mixed_graph = self.quantize(searched, scheme).path
            self.float_nodes = []
            all_int8 = self.quantize(self.tmp / "all_int8.onnx", scheme).path
            self.float_nodes = result.float_nodes
            record["speed"] = mixed.speed_cost(all_int8, mixed_graph, self.images)
        return record

    def _default_excluded(self) -> list[str]:
        import onnx

        proto = onnx.load(str(self.graph), load_external_data=False)
        return sum(default_float_nodes(proto, self.recipe.float_stem), [])

    def quantize(self, dst: Path, scheme: str) -> QuantizedGraph:
        return _quantize_one(self.graph, dst, scheme, self.reader, self.recipe.method, self.cache,
                             samples=len(self.images), batch=self.recipe.batch,
                             float_nodes=self.float_nodes, float_stem=self.recipe.float_stem)


def _run_ort(path: Path, images: np.ndarray, batch: int = 16) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {INPUT_NAME: images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)])


def _prepare(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:
        log.warning("quant_pre_process failed on %s (%s); quantizing the graph as is", src, exc)
        return src
    return dst


def _quantize_one(src: Path, dst: Path, scheme: str, reader: CalibrationReader, method: str,
                  cache: Path, *, samples: int, batch: int,
                  float_nodes: Sequence[str] = (), float_stem: bool = False) -> QuantizedGraph:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    activation, symmetric, target = SCHEMES[scheme]
    proto = onnx.load(str(src), load_external_data=False)
    base, stem = default_float_nodes(proto, float_stem)
    excluded = base + stem
    excluded += [n for n in float_nodes if n not in excluded]
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    reader.rewind()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ORT's histogram calibrators print
            quantize_static(
                str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8,
                calibrate_method=calibrate, nodes_to_exclude=excluded,
                calibration_cache_path=str(cache),
                # TensorRT fuses float biases itself and has no int32 dequantize for them.
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                               "QuantizeBias": target != "tensorrt"},
            )
    except Exception as exc:
        raise QuantizationError(f"int8 ({scheme}) quantization of {src.name} failed: "
                                f"{type(exc).__name__}: {exc}", source=str(src)) from exc
    _copy_metadata(src, dst)
    record = {"scheme": scheme, "format": "QDQ", "activations": activation.lower().replace(
        "q", "", 1), "weights": "int8", "per_channel": True, "symmetric_activations": symmetric,
        "calibration_method": method, "calibration_samples": samples, "calibration_batch": batch,
        "float_stem": stem, "excluded_nodes": excluded}
    return QuantizedGraph(dst, scheme, target, record)


def _copy_metadata(src: Path, dst: Path) -> None:
    """quantize_static keeps metadata_props in practice; make sure the spec survives regardless."""
    import onnx

    source = onnx.load(str(src), load_external_data=False)
    model = onnx.load(str(dst))
    present = {p.key for p in model.metadata_props}
    missing = [p for p in source.metadata_props if p.key not in present]
    if missing:
        for prop in missing:
            model.metadata_props.add(key=prop.key, value=prop.value)
        save_model(model, dst)


def count_ops(path: Path, op_types: Sequence[str]) -> dict[str, int]:
    """How many nodes of each type a graph has (to check quantization really happened)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {op: sum(1 for n in model.graph.node if n.op_type == op) for op in op_types}
