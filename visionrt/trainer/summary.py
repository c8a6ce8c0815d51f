"""Keras-style ``model.summary()`` for any timm architecture, built on the meta device (no memory).

Per layer: name, type, output shape, kernel/stride, parameter count and whether it trains. The count
is the seed's formula generalised: a conv has (kw * kh * c_in / groups + 1) * filters parameters
(no +1 without bias), a dense layer c_in * c_out + c_out, a BatchNorm 2 * channels trainable ones.
The total equals the library's own ``sum(p.numel())``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from visionrt.trainer.models import _create, apply_freeze, resolve_arch, spec_for


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: list[int] | None
    kernel: list[int] | None
    stride: list[int] | None
    params: int
    trainable: bool


def summarize(arch: str, *, img_size: int | None = None, num_classes: int | None = None,
              freeze: float = 0.0) -> dict:
    """Layers and parameter totals of ``arch`` (JSON-ready: ``total_params``, ``layers``, ...).

    Args:
        img_size: input side (default: the pretrained cfg's input size).
        num_classes: head size (default: the pretrained head, e.g. 1000).
        freeze: fraction of the backbone to mark frozen (1.0 = Keras include_top=False +
            trainable=False).
    """
    arch = resolve_arch(arch)
    with torch.device("meta"):
        model = _create(arch, num_classes, "avg", 0.0)
    apply_freeze(model, freeze)
    height, width = spec_for(arch, ["x"], img_size=img_size).input_size
    layers = _trace(model.eval(), (1, 3, height, width))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(layer.params for layer in layers) == total, "every parameter belongs to a layer"
    return {"arch": arch, "input_size": [height, width], "total_params": total,
            "trainable_params": trainable, "frozen_params": total - trainable,
            "layers": [asdict(layer) for layer in layers]}


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Run one meta-device forward, recording every module that owns parameters or is a leaf."""
    shapes: dict[str, list[int]] = {}
    hooks = []
    named = [(name, module) for name, module in model.named_modules() if name and
             (list(module.parameters(recurse=False)) or not list(module.children()))]
    for name, module in named:
        hooks.append(module.register_forward_hook(_recorder(shapes, name)))
    try:
        with torch.no_grad():
            model(torch.empty(input_shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    layers = []
    for name, module in named:
        own = list(module.parameters(recurse=False))
        layers.append(LayerInfo(
            name=name, type=type(module).__name__, output_shape=shapes.get(name),
            kernel=_pair(getattr(module, "kernel_size", None)),
            stride=_pair(getattr(module, "stride", None)),
            params=sum(p.numel() for p in own),
            trainable=bool(own) and any(p.requires_grad for p in own)))
    return layers


def _recorder(shapes: dict, name: str):
    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            shapes[name] = list(output.shape)

    return hook


def _pair(value: object) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return [value, value]
    return [int(v) for v in value]


def format_table(summary: dict) -> list[tuple[str, ...]]:
    """Rows (name, type, output shape, kernel/stride, params, trainable) for a table."""
    rows = []
    for layer in summary["layers"]:
        shape = "x".join(str(s) for s in layer["output_shape"][1:]) if layer["output_shape"] \
            else "-"
        kernel = ""
        if layer["kernel"]:
            kernel = f"{layer['kernel'][0]}x{layer['kernel'][1]}"
            if layer["stride"]:
                kernel += f" /{layer['stride'][0]}"
        rows.append((layer["name"], layer["type"], shape, kernel, f"{layer['params']:,}",
                     ("yes" if layer["trainable"] else "frozen") if layer["params"] else ""))
    return rows
