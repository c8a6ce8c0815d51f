"""Weights files: garbage vs code-carrying pickles, header tensor cap, dtype mismatches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from visionrt.errors import CorruptCheckpointError, UnsafeCheckpointError, WeightsMismatchError
from visionrt.trainer import weights


class _Payload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 4])
def test_raw_pickle_names_its_global_and_never_runs(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(pickle.dumps({"w": _Payload(tmp_path / "PWNED")}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        weights.load_state_dict_file(path)
    assert not (tmp_path / "PWNED").exists()


def test_html_error_page_is_corrupt_not_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(CorruptCheckpointError, match="not a torch checkpoint"):
        weights.load_state_dict_file(path)


def test_tensor_count_is_read_from_the_header(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "many.safetensors"
    save_file({f"t{i}": torch.zeros(1) for i in range(30)}, str(path))
    monkeypatch.setattr(weights, "MAX_TENSORS", 10)
    with pytest.raises(CorruptCheckpointError, match="30 tensors exceeds 10"):
        weights.load_state_dict_file(path)
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(CorruptCheckpointError, match="header"):
        weights.load_state_dict_file(path)


def test_integer_weights_for_float_parameters_do_not_fit() -> None:
    model = torch.nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 3, dtype=torch.int8), "bias": torch.zeros(2)}
    with pytest.raises(WeightsMismatchError, match="dtype torch.int8"):
        weights.check_state_dict(state, model, source="w")
    half = {k: v.half() for k, v in model.state_dict().items()}
    weights.check_state_dict(half, model, source="w")  # fp16 for fp32 is fine


def test_no_offline_weights_offers_training_from_scratch(tmp_path: Path, monkeypatch) -> None:
    from visionrt.errors import WeightsNotFoundError
    from visionrt.trainer.models import build_model

    for variable in ("HF_HUB_CACHE", "HF_HOME", "TORCH_HOME"):  # no cached weights to find
        monkeypatch.setenv(variable, str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError, match=r"--weights /path/to/resnet10t\.safetensors"
                       r".*\. Or train from scratch with --weights none$"):
        build_model("resnet10t", 3, weights="imagenet")
