"""End-to-end training: run-dir contract, resume equivalence, divergence, binary CSV, two phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from visionrt.errors import ConfigError, CorruptCheckpointError, TrainingDivergedError
from visionrt.spec import ModelSpec
from visionrt.trainer.config import AugmentConfig, TrainConfig
from visionrt.trainer.loop import train
from visionrt.trainer.models import load_run_model
from visionrt.trainer.weights import load_state_dict_file


class Interrupt(Exception):
    pass


def test_run_dir_contract(trained_run) -> None:
    run = trained_run.run_dir
    for name in ("model.safetensors", "spec.json", "config.json", "history.json", "history.csv",
                 "metrics.json", "curves.png", "confusion_matrix.png",
                 "checkpoints/last/model.safetensors", "checkpoints/last/train_state.pt",
                 "checkpoints/best/train_state.pt"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds",
            "images_per_second"} <= set(history[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and "accuracy" in metrics["val"]
    assert len(metrics["val"]["confusion_matrix"]) == 3
    config = json.loads((run / "config.json").read_text())
    assert config["data"] and config["arch"] == "mobilenetv3_small_050"
    spec = ModelSpec.load(run / "spec.json")
    assert spec.input_size == (32, 32) and len(spec.labels) == 3
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_load_run_model_reproduces_validation_accuracy(trained_run) -> None:
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.evaluate import evaluate_run

    model, spec = load_run_model(trained_run.run_dir)
    assert not model.training and spec.num_outputs == 3
    saved = load_state_dict_file(trained_run.run_dir / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key])
    config = TrainConfig.from_run(trained_run.run_dir)
    result = evaluate_run(trained_run.run_dir, config)
    assert result.metrics["samples"] == 36 and 0 <= result.metrics["accuracy"] <= 1
    assert result.metrics_path.is_file()


def test_resume_equals_uninterrupted_run(tiny_config, tmp_path: Path) -> None:
    options = dict(epochs=3, freeze="0.5", augment=AugmentConfig.preset("light"),
                   optimizer="adamw")
    full = train(tiny_config(out=tmp_path / "full", **options))

    def stop_after_two(event: str, info: dict) -> None:
        if event == "epoch_end" and info["epoch"] == 2:
            raise Interrupt

    config = tiny_config(out=tmp_path / "cut", **options)
    with pytest.raises(Interrupt):
        train(config, stop_after_two)
    assert not (config.out / "metrics.json").exists()
    resumed = train(TrainConfig.from_run(config.out).with_(resume=True))
    assert len(resumed.history) == len(full.history) == 3
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    last_full = load_state_dict_file(full.run_dir / "checkpoints/last/model.safetensors")
    last_resumed = load_state_dict_file(config.out / "checkpoints/last/model.safetensors")
    for key, value in last_full.items():
        torch.testing.assert_close(value, last_resumed[key], rtol=1e-4, atol=1e-5)


def test_resume_refuses_missing_or_changed_runs(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        train(tiny_config(out=tmp_path / "none", resume=True))
    (tmp_path / "empty").mkdir()
    tiny_config(out=tmp_path / "empty").save(tmp_path / "empty" / "config.json")
    with pytest.raises(CorruptCheckpointError, match="no usable checkpoint"):
        train(tiny_config(out=tmp_path / "empty", resume=True))


def test_existing_run_is_not_overwritten_silently(trained_run, tiny_config) -> None:
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(tiny_config(out=trained_run.run_dir))


def test_divergence_stops_and_keeps_last_good_checkpoint(tiny_config, monkeypatch) -> None:
    from visionrt.trainer import run as trainer_run

    real = trainer_run.build_loss
    calls = {"n": 0}

    class NanAfterFirstEpoch(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, logits, targets):
            calls["n"] += 1
            loss = self.inner(logits, targets)
            return loss * float("nan") if calls["n"] > 5 else loss  # 4 steps + 1 eval

    monkeypatch.setattr(trainer_run, "build_loss", lambda c, n: NanAfterFirstEpoch(real(c, n)))
    config = tiny_config(epochs=3, diverge_steps=3, cache_features="off")
    with pytest.raises(TrainingDivergedError, match="non-finite for 3 consecutive steps"):
        train(config)
    state = torch.load(config.out / "checkpoints/last/train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    weights = load_state_dict_file(config.out / "checkpoints/last/model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_binary_csv_run_reports_roc_auc(kaggle_set, tiny_config, tmp_path: Path) -> None:
    csv_path, images = kaggle_set
    result = train(tiny_config(data=None, csv=csv_path, images=images, epochs=2,
                               class_weight="auto", out=tmp_path / "bin"))
    val = result.metrics["val"]
    assert {"roc_auc", "pr_auc", "sensitivity_at_90_specificity"} <= set(val)
    assert result.spec.output_activation == "sigmoid" and result.spec.num_outputs == 1
    assert (result.run_dir / "roc_curve.png").is_file()
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["csv"] and config["images"] and config["image_column"] == "image_name"


def test_two_phase_unfreeze_and_early_stopping(tiny_config, tmp_path: Path) -> None:
    result = train(tiny_config(epochs=3, unfreeze_at=1, out=tmp_path / "two"))
    assert [row["phase"] for row in result.history] == ["head", "finetune", "finetune"]
    stopped = train(tiny_config(epochs=6, early_stopping=1, monitor="val_loss", lr=0.5,
                                optimizer="sgd", out=tmp_path / "es"))
    assert len(stopped.history) <= 6
    if stopped.stopped_early:
        assert len(stopped.history) == stopped.best_epoch + 1


def test_sigterm_stops_at_a_step_boundary_and_resumes(tiny_config) -> None:
    import signal

    from visionrt.errors import TrainingInterruptedError

    def preempt(event: str, info: dict) -> None:
        if event == "step" and info["epoch"] == 2 and info["step"] == 1:
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            signal.raise_signal(signal.SIGTERM)

    config = tiny_config(epochs=3, cache_features="off")
    with pytest.raises(TrainingInterruptedError, match="SIGTERM"):
        train(config, preempt)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored
    state = torch.load(config.out / "checkpoints/last/train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert len(train(config.with_(resume=True)).history) == 3


def test_out_of_memory_names_a_smaller_batch(tiny_config, monkeypatch) -> None:
    from visionrt.errors import ResourceExhaustedError
    from visionrt.trainer import loop

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "optimize_step", oom)
    with pytest.raises(ResourceExhaustedError, match="--batch-size 4"):
        train(tiny_config(epochs=1, batch_size=8))
