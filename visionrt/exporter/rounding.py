"""Weight rounding for int8: put each Conv's weights on ONNX Runtime's int8 grid before it quantizes.

ONNX Runtime quantizes a weight per output channel, symmetric, as ``round(w / s)`` with
``s = max|w| / 127``. Rounding to nearest is what hurts networks whose folded convolutions have
high-gain channels with weights that nearly cancel (edge detectors after batch-norm folding, as in
the first depthwise layer of EfficientNet-Lite/MobileNet): the rounding errors no longer cancel and
every output of the channel shifts by ``input mean x sum of errors``. Two remedies, both applied to
the fp32 graph so that the quantizer reproduces the chosen integers exactly (a weight already on the
grid rounds to itself, and the channel's largest weight keeps the scale):

* **AdaRound** (Nagel et al. 2020, "Up or Down?"): per layer, learn for each weight whether to round
  up or down so that the layer's output (after its ReLU6) on calibration images stays closest to
  fp32's. Layer by layer, a few hundred steps each.
* **Bias correction** (Nagel et al. 2019, "Data-Free Quantization", empirical form): subtract the
  mean output shift that the rounding causes, measured with each layer's mean input on the
  calibration images, from the layer's bias.

Neither ONNX Runtime's quantizer nor OpenVINO/NNCF offer these for an ONNX graph that ONNX Runtime's
fast U8S8 kernels then run (NNCF's bias correction writes signed activations; aimet-onnx needs its
own simulation graph and does not read ReLU6 written as ``Clip`` with input bounds), hence the
short implementation here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionrt.exporter.onnx import INPUT_NAME, save_model

log = logging.getLogger(__name__)

WEIGHT_QMAX = 127  # symmetric int8 weights, as ONNX Runtime writes them
_ZETA, _GAMMA = 1.1, -0.1  # AdaRound's rectified sigmoid stretch


@dataclass(frozen=True)
class RoundingOptions:
    """How :func:`round_weights` rounds.

    Attributes:
        mode: ``nearest`` or ``adaround``.
        bias_correction: also correct each layer's bias for its rounding's mean output shift.
        iterations: AdaRound optimisation steps per layer.
        batch: images per AdaRound step.
        seed: seeds AdaRound's batch sampling.
        regularization: weight of the term that drives each weight to round fully up or down.
    """

    mode: str = "adaround"
    bias_correction: bool = True
    iterations: int = 300
    batch: int = 4
    seed: int = 0
    regularization: float = 1.0


def round_weights(src: Path, dst: Path, images: np.ndarray, options: RoundingOptions,
                  *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Write ``src`` with every Conv's weights on the int8 grid (and biases corrected) to ``dst``.

    Args:
        src: fp32 ONNX graph (the one the quantizer reads).
        dst: output path.
        images: calibration images in the graph's input layout.
        options: rounding mode and bias correction.
        skip: Conv node names left as they are (they stay float).

    Returns:
        the manifest record: mode, bias correction, layers rounded, mean output error before/after.
    """
    import onnx

    proto = onnx.load(str(src))
    convs = [(node, init) for node, init in conv_weights(proto) if node.name not in skip]
    inputs = _LayerInputs(proto, images, keep=options.mode == "adaround")
    errors: list[tuple[float, float]] = []
    for node, init in convs:
        weight = _to_array(init)
        scale = grid_scale(weight)
        x, mean_input = inputs.get(node)
        if x is not None:
            integers, error = adaround(weight, scale, x, _conv_function(node, proto), options)
            errors.append(error)
        else:
            integers = np.clip(np.round(weight / scale), -WEIGHT_QMAX, WEIGHT_QMAX)
        rounded = (integers * scale).astype(np.float32)
        if options.bias_correction:
            _correct_bias(proto, node, rounded - weight, mean_input)
        _set_array(init, rounded)
    save_model(proto, dst)
    record: dict[str, Any] = {"mode": options.mode, "bias_correction": options.bias_correction,
                              "layers": len(convs), "images": int(len(images))}
    if options.mode == "adaround":
        record.update(iterations=options.iterations,
                      output_mse_nearest=float(np.mean([e[0] for e in errors])) if errors else 0.0,
                      output_mse_adaround=float(np.mean([e[1] for e in errors])) if errors else 0.0)
    return record


def conv_weights(proto: Any) -> list[tuple[Any, Any]]:
    """(Conv node, its weight initializer) for every Conv with a constant 4-D weight."""
    inits = {i.name: i for i in proto.graph.initializer}
    return [(n, inits[n.input[1]]) for n in proto.graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits
            and len(inits[n.input[1]].dims) == 4]


def grid_scale(weight: np.ndarray) -> np.ndarray:
    """ONNX Runtime's per-output-channel symmetric int8 scale, shaped to broadcast over ``weight``."""
    peak = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, peak / WEIGHT_QMAX, 1.0).astype(np.float32)
    return scale.reshape(-1, *([1] * (weight.ndim - 1)))


class _LayerInputs:
    """Each Conv's input on the calibration images, computed by the fp32 graph in ONNX Runtime.

    The layers see fp32 inputs, so each rounding is chosen independently of the others. Inputs are
    fetched for a group of consecutive layers per pass over the images, keeping at most
    ``budget_mb`` of them (the early layers of a 224-pixel CNN hold tens of MB per image); a pass
    that only needs means keeps nothing.
    """

    def __init__(self, proto: Any, images: np.ndarray, *, keep: bool, budget_mb: int = 512,
                 batch: int = 16) -> None:
        import onnx
        import onnxruntime as ort

        self.images, self.keep, self.batch = images, keep, batch
        graph = onnx.ModelProto()
        graph.CopyFrom(proto)
        self.order = list(dict.fromkeys(node.input[0] for node, _ in conv_weights(graph)))
        known = {o.name for o in graph.graph.output}
        graph.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                     None)
                                  for name in self.order if name not in known)
        self.session = ort.InferenceSession(graph.SerializeToString(),
                                            providers=["CPUExecutionProvider"])
        sizes = [a.nbytes for a in self.session.run(self.order, {INPUT_NAME: images[:1]})]
        self.groups = _groups(self.order, sizes, budget_mb * 2**20 // max(1, len(images))
                              if keep else None)
        self.cache: dict[str, np.ndarray] = {}
        self.means: dict[str, np.ndarray] = {}

    def get(self, node: Any) -> tuple[np.ndarray | None, np.ndarray]:
        """(the node's input on every image, or None when not kept; its per-channel mean)."""
        name = node.input[0]
        if name not in self.means:
            self.cache.clear()
            self._fetch(next(g for g in self.groups if name in g))
        return self.cache.get(name), self.means[name]

    def _fetch(self, names: list[str]) -> None:
        sums: dict[str, np.ndarray] = {}
        kept: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for start in range(0, len(self.images), self.batch):
            chunk = self.images[start:start + self.batch]
            for name, value in zip(names, self.session.run(names, {INPUT_NAME: chunk}), strict=True):
                per_image = value.astype(np.float64).mean(axis=(2, 3)).sum(axis=0)
                sums[name] = sums.get(name, 0) + per_image
                if self.keep:
                    kept[name].append(value.astype(np.float32))
        for name in names:
            self.means[name] = sums[name] / len(self.images)
            if self.keep:
                self.cache[name] = np.concatenate(kept[name])


def _groups(names: list[str], sizes: list[int], budget: int | None) -> list[list[str]]:
    """Consecutive names whose per-image sizes add up to at most ``budget`` (None: one group)."""
    if budget is None:
        return [list(names)]
    groups: list[list[str]] = [[]]
    total = 0
    for name, size in zip(names, sizes, strict=True):
        if groups[-1] and total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += size
    return groups


def _conv_function(node: Any, proto: Any) -> Callable[[Any, Any], Any]:
    """torch function (x, weight) -> the node's output, followed by its ReLU6 when it has one."""
    import onnx
    import torch

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    inits = {i.name: i for i in proto.graph.initializer}
    bias = (torch.from_numpy(_to_array(inits[node.input[2]]).copy())
            if len(node.input) > 2 and node.input[2] in inits else None)
    clip = _following_clip(node, proto)

    def forward(x: Any, weight: Any) -> Any:
        x = torch.nn.functional.pad(x, (left, right, top, bottom))  # ONNX pads may be uneven
        y = torch.nn.functional.conv2d(x, weight, bias, stride=tuple(attrs.get("strides", [1, 1])),
                                       dilation=tuple(attrs.get("dilations", [1, 1])),
                                       groups=attrs.get("group", 1))
        return y if clip is None else y.clamp(*clip)

    return forward


def _following_clip(node: Any, proto: Any) -> tuple[float, float] | None:
    """(min, max) of a Clip that is the node's only consumer, with constant bounds."""
    consumers = [n for n in proto.graph.node if node.output[0] in n.input]
    if len(consumers) != 1 or consumers[0].op_type not in ("Clip", "Relu"):
        return None
    if consumers[0].op_type == "Relu":
        return (0.0, float("inf"))
    inits = {i.name: i for i in proto.graph.initializer}
    bounds = [float(_to_array(inits[i])) if i in inits else None for i in consumers[0].input[1:3]]
    if len(bounds) < 2 or None in bounds:
        return None
    return (bounds[0], bounds[1])


def adaround(weight: np.ndarray, scale: np.ndarray, x: np.ndarray, forward: Callable,
             options: RoundingOptions) -> tuple[np.ndarray, tuple[float, float]]:
    """AdaRound one layer: integers (floor or ceil of ``weight / scale``) that keep ``forward``'s
    output on ``x`` closest to the float layer's. Returns (integers, (mse nearest, mse chosen))."""
    import torch

    w, s = torch.from_numpy(np.array(weight)), torch.from_numpy(np.array(scale))
    floor = torch.floor(w / s)
    rest = (w / s - floor).clamp(1e-4, 1 - 1e-4)
    v = torch.nn.Parameter(-torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1))  # h(v) == rest
    xs = torch.from_numpy(x)
    with torch.no_grad():
        target = forward(xs, w)

    def soft() -> Any:
        return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0, 1)

    def quantized(up: Any) -> Any:
        return s * torch.clamp(floor + up, -WEIGHT_QMAX, WEIGHT_QMAX)

    with torch.no_grad():  # the loss is relative to round-to-nearest's error: scale-free
        nearest = torch.clamp(torch.round(w / s), -WEIGHT_QMAX, WEIGHT_QMAX) - floor
        unit = float(torch.mean((forward(xs, quantized(nearest)) - target) ** 2)) or 1.0
    optimizer = torch.optim.Adam([v], lr=1e-2)
    generator = torch.Generator().manual_seed(options.seed)
    warmup = options.iterations // 5
    for step in range(options.iterations):
        pick = torch.randint(0, len(xs), (min(options.batch, len(xs)),), generator=generator)
        loss = torch.mean((forward(xs[pick], quantized(soft())) - target[pick]) ** 2) / unit
        if step >= warmup:  # then push every weight to round fully up or down (beta 20 -> 2)
            beta = 20 - 18 * (step - warmup) / max(1, options.iterations - warmup)
            loss = loss + options.regularization * torch.mean(1 - torch.abs(2 * soft() - 1) ** beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        up = (soft() >= 0.5).float()
        errors = tuple(float(torch.mean((forward(xs, quantized(u)) - target) ** 2))
                       for u in (nearest, up))
        chosen = up if errors[1] <= errors[0] else nearest  # never worse than nearest
        integers = torch.clamp(floor + chosen, -WEIGHT_QMAX, WEIGHT_QMAX).numpy()
    return integers.astype(np.float64), (errors[0], min(errors))


def _correct_bias(proto: Any, node: Any, delta: np.ndarray, mean_input: np.ndarray) -> None:
    """bias -= (rounded - float weights) applied to the layer's mean input, per output channel."""
    from onnx import numpy_helper

    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    per_input = delta.sum(axis=(2, 3)).astype(np.float64)  # [out, in / groups]
    out_channels = delta.shape[0]
    group_inputs = mean_input.reshape(groups, -1).astype(np.float64)  # [groups, in / groups]
    owner = np.arange(out_channels) // (out_channels // groups)
    shift = np.einsum("oi,oi->o", per_input, group_inputs[owner])
    inits = {i.name: i for i in proto.graph.initializer}
    if len(node.input) > 2 and node.input[2] in inits:
        bias = inits[node.input[2]]
        _set_array(bias, (_to_array(bias).astype(np.float64) - shift).astype(np.float32))
    else:  # a Conv without bias gets one
        name = f"{node.name}_bias_corrected"
        proto.graph.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = name


def _to_array(init: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


def _set_array(init: Any, value: np.ndarray) -> None:
    from onnx import numpy_helper

    init.CopyFrom(numpy_helper.from_array(value, init.name))
