"""`visionrt summary`: totals equal the library's own parameter counts (seed's architectures)."""

from __future__ import annotations

import json

import pytest

from visionrt.trainer.summary import summarize

TOTALS = {
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet50": 25_557_032,
    "xception": 22_855_952,  # alias of timm's legacy_xception
    "inception_v3": 23_834_568,
}


@pytest.mark.parametrize("arch", list(TOTALS))
def test_summary_totals(arch: str) -> None:
    summary = summarize(arch)
    assert summary["total_params"] == TOTALS[arch]
    assert sum(layer["params"] for layer in summary["layers"]) == TOTALS[arch]


def test_seed_formula_for_vgg16_layers() -> None:
    layers = {layer["name"]: layer for layer in summarize("vgg16")["layers"]}
    first = layers["features.0"]
    assert first["params"] == ((3 * 3 * 3) + 1) * 64  # ((kw*kh*c_in)+1)*filters
    assert first["output_shape"] == [1, 64, 224, 224]
    assert first["kernel"] == [3, 3] and first["stride"] == [1, 1]
    assert layers["head.fc"]["params"] == 4096 * 1000 + 1000  # dense c_in*c_out + c_out


def test_frozen_backbone_counts_and_img_size() -> None:
    summary = summarize("resnet50", freeze=1.0, num_classes=2, img_size=64)
    assert summary["trainable_params"] == 2048 * 2 + 2
    assert summary["frozen_params"] + summary["trainable_params"] == summary["total_params"]
    assert summary["input_size"] == [64, 64]
    json.dumps(summary)


def test_cli_summary_json() -> None:
    from typer.testing import CliRunner

    from visionrt.cli import app

    result = CliRunner().invoke(app, ["summary", "vgg16", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total_params"] == TOTALS["vgg16"]
