"""Keras augmentation: every fill mode against numpy's padding, parameters, dtype and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionrt.errors import ConfigError
from visionrt.trainer.augment import KerasAffine, affine_sample, build_augment, keras_matrix
from visionrt.trainer.config import AugmentConfig

# Keras / scipy fill modes expressed as numpy padding of a shifted row.
NUMPY_PAD = {"nearest": "edge", "reflect": "symmetric", "wrap": "wrap"}


def _ramp(height: int = 6, width: int = 7) -> torch.Tensor:
    values = torch.arange(height * width, dtype=torch.float32).view(1, height, width) * 5 + 3
    return values.expand(3, height, width).contiguous()


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap"])
@pytest.mark.parametrize("shift", [(-3, 0), (4, 0), (0, -2), (5, 3)])
def test_fill_modes_match_numpy_padding(fill_mode: str, shift: tuple[int, int]) -> None:
    image = _ramp()
    out = affine_sample(image, keras_matrix(shift=shift), fill_mode)
    dx, dy = shift
    pad = 8
    padded = np.pad(image[0].numpy(), pad, mode=NUMPY_PAD[fill_mode])
    h, w = image.shape[1:]
    expected = padded[pad + dy: pad + dy + h, pad + dx: pad + dx + w]
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-3)


def test_constant_fill_uses_cval() -> None:
    image = _ramp()
    out = affine_sample(image, keras_matrix(shift=(-3, 0)), "constant", cval=200.0)
    np.testing.assert_allclose(out[0, :, :3].numpy(), 200.0, atol=1e-3)
    np.testing.assert_allclose(out[0, :, 3:].numpy(), image[0, :, :4].numpy(), atol=1e-3)


def test_wrap_differs_from_reflect_far_outside() -> None:
    image = _ramp()
    matrix = keras_matrix(zoom=(3.0, 3.0))  # zoom out: most output pixels come from outside
    outs = {mode: affine_sample(image, matrix, mode, cval=0) for mode in
            ("constant", "nearest", "reflect", "wrap")}
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.allclose(outs[a], outs[b]), (a, b)


def test_identity_matrix_keeps_image() -> None:
    image = _ramp()
    out = affine_sample(image, keras_matrix(), "nearest")
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-3)


def test_rotation_by_90_degrees_of_square_image() -> None:
    image = _ramp(5, 5)
    out = affine_sample(image, keras_matrix(rotation=90), "nearest")
    rotated = torch.rot90(image, k=1, dims=(1, 2))
    assert torch.allclose(out, rotated, atol=1e-3) or torch.allclose(
        out, torch.rot90(image, k=-1, dims=(1, 2)), atol=1e-3)


def test_keras_preset_and_uint8_roundtrip() -> None:
    config = AugmentConfig.preset("keras")
    assert (config.zoom_range, config.rotation_range, config.width_shift_range,
            config.shear_range, config.horizontal_flip, config.fill_mode) == (
        0.3, 50.0, 0.2, 0.2, True, "nearest")
    transform = build_augment(config.__class__(**{**config.__dict__,
                                                  "brightness_range": (0.8, 1.2)}))
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8)
    out = transform(image)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert not torch.equal(out, image)


def test_no_augmentation_is_none() -> None:
    assert build_augment(AugmentConfig.preset("none")) is None
    assert build_augment(AugmentConfig(fill_mode="wrap")) is None


def test_shift_range_in_pixels_and_fraction() -> None:
    torch.manual_seed(0)
    transform = KerasAffine(AugmentConfig(width_shift_range=0.25))
    image = torch.zeros(3, 8, 16)
    shifts = [float(transform.make_params([image])["matrix"][0, 2]) for _ in range(200)]
    assert max(abs(s) for s in shifts) <= 4.0 + 1e-6 and max(abs(s) for s in shifts) > 3.0
    transform = KerasAffine(AugmentConfig(height_shift_range=3))  # >= 1: pixels
    shifts = [float(transform.make_params([image])["matrix"][1, 2]) for _ in range(200)]
    assert max(abs(s) for s in shifts) <= 3.0 + 1e-6


@pytest.mark.parametrize("bad", [dict(fill_mode="mirror"), dict(zoom_range=1.5),
                                 dict(rotation_range=-1), dict(brightness_range=(1.2, 0.8))])
def test_invalid_parameters_raise(bad: dict) -> None:
    with pytest.raises(ConfigError):
        AugmentConfig(**bad)
