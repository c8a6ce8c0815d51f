"""Keras ``ImageDataGenerator`` augmentation on ``torchvision.transforms.v2``.

The random affine follows Keras' ``apply_affine_transform``: one matrix rotation @ shift @ shear @
zoom about the image centre maps each output pixel to a source position, sampled bilinearly. The four
``fill_mode`` s of Keras (scipy.ndimage semantics) are implemented exactly:

    constant  kkkkkkkk|abcd|kkkkkkkk   (k = cval)
    nearest   aaaaaaaa|abcd|dddddddd
    reflect   abcddcba|abcd|dcbaabcd   (edge pixel repeated)
    wrap      abcdabcd|abcd|abcdabcd

Inputs and outputs are uint8 (C, H, W) tensors at the model's input size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from visionrt.trainer.config import AugmentConfig


def keras_matrix(rotation: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
                 shear: float = 0.0, zoom: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """3x3 matrix mapping output (x, y) about the centre to the source position (Keras order).

    Args:
        rotation, shear: degrees. shift: (tx, ty) pixels. zoom: (zx, zy); > 1 zooms out.
    """
    theta, phi = math.radians(rotation), math.radians(shear)
    rotate = torch.tensor([[math.cos(theta), -math.sin(theta), 0.0],
                           [math.sin(theta), math.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    translate = torch.tensor([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    shear_m = torch.tensor([[1.0, -math.sin(phi), 0.0], [0.0, math.cos(phi), 0.0],
                            [0.0, 0.0, 1.0]])
    scale = torch.tensor([[zoom[0], 0.0, 0.0], [0.0, zoom[1], 0.0], [0.0, 0.0, 1.0]])
    return rotate @ translate @ shear_m @ scale


def affine_sample(image: torch.Tensor, matrix: torch.Tensor, fill_mode: str = "nearest",
                  cval: float = 0.0) -> torch.Tensor:
    """Resample a float (C, H, W) image through ``matrix`` with a Keras fill mode."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing="ij")
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    coords = torch.stack([xs.flatten() - cx, ys.flatten() - cy, torch.ones(height * width)])
    source = matrix.to(torch.float32) @ coords
    sx, sy = source[0] + cx, source[1] + cy
    if fill_mode == "wrap":
        sx = torch.remainder(sx + 0.5, width) - 0.5
        sy = torch.remainder(sy + 0.5, height) - 0.5
    grid = torch.stack([(sx + 0.5) / width * 2 - 1, (sy + 0.5) / height * 2 - 1], dim=-1)
    grid = grid.view(1, height, width, 2)
    padding = {"nearest": "border", "wrap": "border", "reflect": "reflection",
               "constant": "zeros"}[fill_mode]
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode=padding,
                        align_corners=False)[0]
    if fill_mode == "constant" and cval:
        inside = F.grid_sample(torch.ones_like(image[:1])[None], grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)[0]
        out = out + (1.0 - inside) * cval
    return out


class KerasAffine(v2.Transform):
    """Random rotation / shift / shear / zoom with Keras' parameter meaning and fill modes."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.config = config

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        c = self.config
        height, width = v2.functional.get_size(flat_inputs[0])

        def uniform(low: float, high: float) -> float:
            return float(torch.empty(1).uniform_(low, high)) if high > low else low

        def shift(fraction: float, size: int) -> float:
            pixels = fraction * size if fraction < 1 else fraction
            return uniform(-pixels, pixels)

        zoom = (uniform(1 - c.zoom_range, 1 + c.zoom_range),
                uniform(1 - c.zoom_range, 1 + c.zoom_range))
        matrix = keras_matrix(rotation=uniform(-c.rotation_range, c.rotation_range),
                              shift=(shift(c.width_shift_range, width),
                                     shift(c.height_shift_range, height)),
                              shear=uniform(-c.shear_range, c.shear_range), zoom=zoom)
        return {"matrix": matrix}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or inpt.ndim != 3:
            return inpt
        dtype = inpt.dtype
        out = affine_sample(inpt.to(torch.float32), params["matrix"], self.config.fill_mode,
                            self.config.cval)
        if dtype == torch.uint8:
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return out.to(dtype)


def build_augment(config: AugmentConfig) -> v2.Transform | None:
    """The training augmentation for ``config``; None when it changes nothing."""
    if config.is_identity:
        return None
    steps: list[v2.Transform] = []
    if any((config.rotation_range, config.width_shift_range, config.height_shift_range,
            config.shear_range, config.zoom_range)):
        steps.append(KerasAffine(config))
    if config.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if config.vertical_flip:
        steps.append(v2.RandomVerticalFlip())
    if config.brightness_range is not None:
        steps.append(v2.ColorJitter(brightness=config.brightness_range))
    return v2.Compose(steps)
