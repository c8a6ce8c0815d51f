"""Model building, specs, and Keras freeze semantics (frozen params get no gradient, BN stays put)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionrt.errors import UnknownArchError, WeightsMismatchError
from visionrt.trainer.models import (
    apply_freeze,
    backbone_groups,
    backbone_is_frozen,
    build_model,
    classifier_prefix,
    resolve_arch,
    set_train_mode,
    spec_for,
)

ARCH = "mobilenetv3_small_050"


def _bn_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def _step(model: torch.nn.Module, lr: float = 0.1) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters()], lr=lr)
    set_train_mode(model)
    x = torch.randn(4, 3, 32, 32) * 3 + 1
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_frozen_backbone_gets_no_gradient_and_bn_stats_do_not_move() -> None:
    torch.manual_seed(0)
    model = build_model(ARCH, 3, weights="none")
    frozen = apply_freeze(model, 1.0)
    assert frozen > 0 and backbone_is_frozen(model)
    head = classifier_prefix(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model)
    for name, param in model.named_parameters():
        if name.startswith(head):
            assert param.requires_grad and param.grad is not None
            assert not torch.equal(param, before[name]), f"head {name} did not learn"
        else:
            assert not param.requires_grad and param.grad is None, name
            assert torch.equal(param, before[name]), f"frozen {name} changed"
    for key, value in _bn_stats(model).items():
        assert torch.equal(value, before[key]), f"frozen BatchNorm statistic {key} moved"


def test_unfrozen_model_moves_bn_statistics() -> None:
    torch.manual_seed(0)
    model = build_model(ARCH, 3, weights="none")
    apply_freeze(model, 0.0)
    before = _bn_stats(model)
    _step(model)
    assert any(not torch.equal(v, before[k]) for k, v in _bn_stats(model).items())


def test_fraction_freezes_the_first_blocks() -> None:
    model = build_model(ARCH, 3, weights="none")
    groups = backbone_groups(model)
    apply_freeze(model, 0.5)
    params = dict(model.named_parameters())
    count = round(0.5 * len(groups))
    assert all(not params[n].requires_grad for names in groups[:count] for n in names)
    assert all(params[n].requires_grad for names in groups[count:] for n in names)
    assert params[f"{classifier_prefix(model)}.weight"].requires_grad
    set_train_mode(model)
    first = model.get_submodule(groups[0][0].rsplit(".", 1)[0])
    assert not first.training  # frozen part in inference mode


def test_weights_file_roundtrip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = build_model(ARCH, 3, weights="none")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = build_model(ARCH, 3, weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    other = build_model(ARCH, 5, weights=str(path))  # new head, same backbone
    assert other.get_classifier().out_features == 5


def test_weights_for_another_arch_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = build_model("resnet18", 3, weights="none")
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(WeightsMismatchError, match="missing"):
        build_model(ARCH, 3, weights=str(path))


def test_arch_aliases_and_unknown_names() -> None:
    assert resolve_arch("xception") == "legacy_xception"
    with pytest.raises(UnknownArchError, match="resnet50"):
        resolve_arch("resnet5O")


def test_spec_follows_pretrained_cfg() -> None:
    lite0 = spec_for("tf_efficientnet_lite0", ["a", "b"])
    assert lite0.input_size == (224, 224) and lite0.mean == (0.5, 0.5, 0.5)
    assert lite0.interpolation == "bicubic" and lite0.crop_pct == 0.875
    assert spec_for("inception_v3", ["a", "b"]).input_size == (299, 299)
    assert spec_for("resnet50", ["a", "b"], img_size=64).input_size == (64, 64)


def test_pooling_and_dropout_options() -> None:
    model = build_model(ARCH, 2, weights="none", pooling="max", dropout=0.3)
    assert "max" in repr(model.global_pool).lower()
    assert model.drop_rate == 0.3


def test_imagenet_model_sees_a_cat(photo) -> None:
    """The embedded Lite0 weights + its spec + the shared eval transform: chelsea is a cat."""
    import numpy as np

    from visionrt.images import normalize, preprocess
    from visionrt.trainer.models import imagenet_model

    model, spec = imagenet_model("tf_efficientnet_lite0")
    assert len(spec.labels) == 1000 and not model.training
    batch = normalize(preprocess(photo, spec)[None], spec)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(np.ascontiguousarray(batch))), dim=1)
    assert int(probs.argmax()) in (281, 282, 285), spec.labels[int(probs.argmax())]


def test_unfrozen_fine_tuning_keeps_bn_in_inference_mode() -> None:
    torch.manual_seed(0)
    model = build_model(ARCH, 3, weights="none")
    apply_freeze(model, 0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    set_train_mode(model, freeze_bn=True)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)),
                                             torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if "running_" in k)
    assert not torch.equal(after["conv_stem.weight"], before["conv_stem.weight"])
