"""Each loss / optimizer / schedule / imbalance / precision option trains for an epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionrt.errors import ConfigError
from visionrt.trainer.config import TrainConfig
from visionrt.trainer.loop import train
from visionrt.trainer.losses import SigmoidLoss
from visionrt.trainer.optim import LRFactor


@pytest.mark.parametrize("options", [
    dict(amp=True),
    dict(sampler="balanced", class_weight="auto", label_smoothing=0.1),
    dict(schedule="onecycle", optimizer="sgd", nesterov=True, warmup_epochs=0.5),
    dict(optimizer="adam", schedule="constant", pooling="max", dropout=0.2),
    dict(freeze="none", channels_last=False, cache_features="off", num_workers=1),
], ids=["amp-bf16", "balanced", "onecycle-sgd", "adam-max-dropout", "full-workers"])
def test_option_trains(tiny_config, options: dict) -> None:
    result = train(tiny_config(epochs=1, **options))
    assert len(result.history) == 1 and result.history[0]["train_loss"] is not None


def test_separate_validation_folder(tiny_config, tiny_imagefolder: Path) -> None:
    result = train(tiny_config(epochs=1, val=tiny_imagefolder))
    assert result.metrics["val_samples"] == 36 and result.metrics["train_samples"] == 36


def test_focal_loss_on_binary_csv(kaggle_set, tiny_config, tmp_path: Path) -> None:
    csv_path, images = kaggle_set
    result = train(tiny_config(data=None, csv=csv_path, images=images, epochs=1, loss="focal",
                               out=tmp_path / "focal"))
    assert result.metrics["val"]["roc_auc"] is not None


def test_lr_schedule_warmup_cosine_and_unfreeze_factor(tmp_path: Path) -> None:
    config = TrainConfig(out=tmp_path, data=tmp_path, epochs=4, warmup_epochs=1, unfreeze_at=2,
                         unfreeze_lr_factor=0.1)
    factor = LRFactor(config, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(19) < 1.0
    assert factor(20) < 0.1 * factor(19)  # unfrozen: lower LR
    assert factor(39) == pytest.approx(0.1 * 0.5 * (1 + torch.cos(torch.tensor(29 / 30 * 3.14159265)).item()), rel=1e-3)


def test_sigmoid_losses_balance_positives() -> None:
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    targets = torch.tensor([1, 0, 1])
    plain = SigmoidLoss(focal_gamma=None, pos_weight=None, label_smoothing=0.0)
    weighted = SigmoidLoss(focal_gamma=None, pos_weight=3.0, label_smoothing=0.0)
    focal = SigmoidLoss(focal_gamma=2.0, pos_weight=None, label_smoothing=0.0)
    assert weighted(logits, targets) > plain(logits, targets) > focal(logits, targets) > 0


@pytest.mark.parametrize("bad", [dict(val_split=1.0), dict(epochs=0), dict(lr=float("nan")),
                                 dict(optimizer="lion"), dict(freeze="1.5"),
                                 dict(schedule="onecycle", unfreeze_at=1),
                                 dict(freeze="none", unfreeze_at=1), dict(image_suffix="jpg")])
def test_config_rejects(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(out=tmp_path, data=tmp_path, **bad)


def test_config_errors_name_the_train_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--val-split 1.5 is invalid; expected a fraction"):
        TrainConfig(out=tmp_path, data=tmp_path, val_split=1.5)
    with pytest.raises(ConfigError, match=r"^--unfreeze-lr-factor 2.0 is invalid"):
        TrainConfig(out=tmp_path, data=tmp_path, unfreeze_lr_factor=2.0)


def test_data_paths_are_stored_absolute(tmp_path: Path, monkeypatch) -> None:
    """A run's config.json finds its data from any working directory."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(out=Path("run"), data=Path("data"))
    legacy = config.fingerprint(relative_paths=True)  # what runs before this change stored
    assert config.to_dict()["data"] == str(tmp_path / "data") and config.out == Path("run")
    config.save(tmp_path / "config.json")
    monkeypatch.chdir(tmp_path.parent)
    again = TrainConfig.from_run(tmp_path)
    assert again.data == tmp_path / "data" and again.fingerprint() == config.fingerprint()
    monkeypatch.chdir(tmp_path)  # an old run resumed from where it was trained still matches
    assert config.fingerprint_matches(legacy) and config.fingerprint_matches(config.fingerprint())
    assert not config.fingerprint_matches("0" * 16)


def test_config_json_roundtrip(tmp_path: Path) -> None:
    from visionrt.trainer.config import AugmentConfig

    config = TrainConfig(out=tmp_path, data=tmp_path, freeze="0.7",
                         augment=AugmentConfig.preset("keras", brightness_range=(0.9, 1.1)))
    config.save(tmp_path / "config.json")
    again = TrainConfig.from_run(tmp_path)
    assert again == config and again.fingerprint() == config.fingerprint()
    assert again.with_(epochs=9).fingerprint() == config.fingerprint()
    assert again.with_(lr=0.5).fingerprint() != config.fingerprint()
