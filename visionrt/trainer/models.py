"""Build timm classifiers with offline pretrained weights, describe them as a ModelSpec, freeze them.

Keras vocabulary: ``freeze="backbone"`` is include_top=False + trainable=False (only the new head
learns and the frozen BatchNorm layers stay in inference mode); a fraction freezes the first part of
the backbone's blocks (timm's parameter groups, stem first); ``"none"`` trains everything.
"""

from __future__ import annotations

import difflib
import json
import logging
from importlib import resources
from pathlib import Path

from torch import nn

from visionrt.errors import ConfigError, UnknownArchError
from visionrt.spec import INTERPOLATIONS, ModelSpec
from visionrt.trainer.weights import check_state_dict, load_state_dict_file, resolve_pretrained

log = logging.getLogger(__name__)

ARCH_ALIASES = {"xception": "legacy_xception", "efficientnet_lite0": "tf_efficientnet_lite0"}


def resolve_arch(arch: str) -> str:
    """The timm name of ``arch`` (aliases such as ``xception`` resolved).

    Raises:
        UnknownArchError: with the closest timm names.
    """
    import timm

    name = ARCH_ALIASES.get(arch, arch)
    if timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "list names with timm.list_models()"
    raise UnknownArchError(f"unknown architecture {arch!r}", source=arch, hint=hint)


def _create(arch: str, num_classes: int | None, pooling: str, dropout: float) -> nn.Module:
    import timm

    kwargs: dict = {"pretrained": False, "global_pool": pooling}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        return timm.create_model(arch, drop_rate=dropout, **kwargs)
    except TypeError:  # a few archs do not take drop_rate
        if dropout:
            raise ConfigError(f"{arch} does not support --dropout", source=arch) from None
        return timm.create_model(arch, **kwargs)


def classifier_prefix(model: nn.Module) -> str:
    """State-dict prefix of the classification layer (``classifier``, ``fc``, ``head.fc``)."""
    prefix = model.pretrained_cfg.get("classifier", "classifier")
    return prefix[0] if isinstance(prefix, (list, tuple)) else prefix


def build_model(
    arch: str,
    num_classes: int,
    *,
    weights: str = "imagenet",
    pooling: str = "avg",
    dropout: float = 0.0,
) -> nn.Module:
    """A timm classifier with a new ``num_classes`` head on a (pretrained) backbone.

    Args:
        arch: timm name (aliases like ``xception`` accepted).
        num_classes: outputs of the new head (1 for a sigmoid binary head).
        weights: ``"imagenet"`` (resolved offline), ``"none"`` (random init) or a file path
            (.safetensors / torch state dict) of the backbone or of the whole classifier.
        pooling: ``"avg"`` or ``"max"`` global pooling before the head.
        dropout: dropout rate before the head.

    Raises:
        UnknownArchError, WeightsNotFoundError, WeightsMismatchError, CorruptCheckpointError.
    """
    arch = resolve_arch(arch)
    if weights == "none":
        return _create(arch, num_classes, pooling, dropout)
    model = _create(arch, None, pooling, dropout)
    state, origin = resolve_pretrained(arch, model, weights,
                                       otherwise="Or train from scratch with --weights none")
    head = classifier_prefix(model)
    check_state_dict(state, model, source=origin, ignore_prefixes=(head,))
    backbone = {k: v for k, v in state.items() if not k.startswith(head)}
    model.load_state_dict(backbone, strict=False)
    model.reset_classifier(num_classes, global_pool=pooling)
    head_state = {k[len(head) + 1:]: v for k, v in state.items() if k.startswith(head + ".")}
    _load_head_if_it_fits(model, head, head_state)
    log.info("built %s with %d outputs, weights from %s", arch, num_classes, origin)
    return model


def _load_head_if_it_fits(model: nn.Module, head: str, head_state: dict) -> None:
    module = model.get_submodule(head)
    own = module.state_dict()
    if head_state and set(head_state) == set(own) and all(
        head_state[k].shape == own[k].shape for k in own
    ):
        module.load_state_dict(head_state)  # a fine-tuned classifier passed as --weights


def spec_for(
    arch: str,
    labels: list[str] | tuple[str, ...],
    *,
    img_size: int | None = None,
    output_activation: str = "softmax",
) -> ModelSpec:
    """ModelSpec with the preprocessing of ``arch``'s pretrained cfg (size, crop, mean/std)."""
    import timm

    arch = resolve_arch(arch)
    cfg = timm.get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if cfg is not None else {}
    _, height, width = cfg.get("input_size", (3, 224, 224))
    if img_size is not None:
        height = width = img_size
    interpolation = cfg.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bilinear"
    return ModelSpec(
        arch=arch,
        labels=tuple(labels),
        input_size=(height, width),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        resize_mode="squash" if cfg.get("crop_mode") == "squash" else "center_crop",
        interpolation=interpolation,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        output_activation=output_activation,
    )


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, ModelSpec]:
    """The trained classifier of a run dir, in eval mode, and its ModelSpec.

    Raises:
        ConfigError: not a run dir; WeightsMismatchError / CorruptCheckpointError: bad weights.
    """
    run_dir = Path(run_dir)
    spec_path, weights_path = run_dir / "spec.json", run_dir / "model.safetensors"
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise ConfigError(f"{path} not found: {run_dir} is not a finished training run",
                              source=str(path),
                              hint="train one with: visionrt train DATA --out RUN")
    spec = ModelSpec.load(spec_path)
    options = _run_model_options(run_dir)
    model = _create(spec.arch, spec.num_outputs, options.get("pooling", "avg"),
                    options.get("dropout", 0.0))
    state = load_state_dict_file(weights_path)
    check_state_dict(state, model, source=str(weights_path))
    model.load_state_dict(state)
    return model.eval(), spec


def _run_model_options(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in index order."""
    text = resources.files("visionrt.data").joinpath("imagenet_classes.txt").read_text("utf-8")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(labels) == 1000, f"imagenet_classes.txt has {len(labels)} lines"
    return labels


def imagenet_model(arch: str, *, weights: str = "imagenet") -> tuple[nn.Module, ModelSpec]:
    """The pretrained 1000-class ImageNet classifier of ``arch`` (eval mode) and its ModelSpec."""
    arch = resolve_arch(arch)
    model = _create(arch, None, "avg", 0.0)
    state, origin = resolve_pretrained(arch, model, weights)
    check_state_dict(state, model, source=origin)
    model.load_state_dict(state)
    labels = imagenet_labels()
    if model.num_classes != len(labels):
        raise ConfigError(f"{arch} has {model.num_classes} outputs, not the 1000 ImageNet classes",
                          source=arch)
    return model.eval(), spec_for(arch, labels)


# --- freezing ---------------------------------------------------------------------------------
def backbone_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names of the backbone's blocks, stem first (the head excluded)."""
    from timm.models import group_parameters

    head = classifier_prefix(model)
    try:
        groups = group_parameters(model, model.group_matcher(coarse=False))
        ordered = [list(groups[k]) for k in sorted(groups)]
    except (AttributeError, NotImplementedError):
        ordered = [[n for n, _ in child.named_parameters(prefix=name)]
                   for name, child in model.named_children()]
    result = []
    for names in ordered:
        names = [n for n in names if not (n == head or n.startswith(head + "."))]
        if names:
            result.append(names)
    return result


def apply_freeze(model: nn.Module, fraction: float) -> int:
    """Freeze the first ``fraction`` of the backbone's blocks (1.0 = whole backbone).

    Returns:
        the number of frozen parameters.
    """
    groups = backbone_groups(model)
    count = round(fraction * len(groups))
    frozen_names = {n for names in groups[:count] for n in names}
    if fraction >= 1.0:  # also anything outside the groups that is not the head
        head = classifier_prefix(model)
        frozen_names |= {n for n, _ in model.named_parameters()
                         if not (n == head or n.startswith(head + "."))}
    frozen = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)
        frozen += param.numel() if name in frozen_names else 0
    return frozen


def set_train_mode(model: nn.Module, *, freeze_bn: bool = False) -> nn.Module:
    """``model.train()``, then every fully frozen sub-module back to eval (BN keeps its stats).

    Args:
        freeze_bn: also keep every BatchNorm in inference mode (Keras' fine-tuning advice after
            unfreezing a pretrained backbone: batch statistics of small batches would wreck it).
    """
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.eval()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
    return model


def backbone_is_frozen(model: nn.Module) -> bool:
    """True when only the head has trainable parameters."""
    head = classifier_prefix(model)
    return not any(p.requires_grad for n, p in model.named_parameters()
                   if not (n == head or n.startswith(head + ".")))
