"""Catalogue A1-A4: untrusted model files (checkpoints, safetensors).

A5 (ONNX external data) is in test_a_external_data.py; A6-A11 (I/O vs manifest, TensorRT
engines, providers, doctor) are in test_a_engines.py.
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from visionrt.errors import (  # noqa: E402
    CorruptCheckpointError,
    UnsafeCheckpointError,
    WeightsMismatchError,
)
from visionrt.trainer import weights  # noqa: E402


# --- A1 code-executing pickles ----------------------------------------------------------------
class _Payload:
    """Pickles to a call of os.system that would create the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _evil_files(folder: Path) -> dict[str, Path]:
    sentinel = folder / "PWNED"
    files = {}
    files["zip.pt"] = folder / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(sentinel)},
               files["zip.pt"])
    files["raw-proto2.pth"] = folder / "raw2.pth"
    files["raw-proto2.pth"].write_bytes(pickle.dumps({"w": _Payload(sentinel)}, protocol=2))
    files["raw-proto4.bin"] = folder / "raw4.bin"
    files["raw-proto4.bin"].write_bytes(pickle.dumps({"w": _Payload(sentinel)}, protocol=4))
    return files


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("kind", ["zip.pt", "raw-proto2.pth", "raw-proto4.bin"])
@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_A1_malicious_pickle_is_refused_and_never_executed(tmp_path, monkeypatch, kind,
                                                           force_unsafe_env):
    if force_unsafe_env:  # S1: this env var must not switch visionrt to unsafe loading
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = _evil_files(tmp_path)[kind]
    with pytest.raises(UnsafeCheckpointError) as info:
        weights.load_state_dict_file(path)
    assert not (tmp_path / "PWNED").exists(), "the pickle payload ran"
    message = str(info.value)
    assert str(path) in message and "did not execute" in message
    assert "weights_only=False" not in message  # never advise the unsafe switch


def test_A1_error_names_the_first_disallowed_global(tmp_path):
    path = _evil_files(tmp_path)["zip.pt"]
    with pytest.raises(UnsafeCheckpointError) as info:
        weights.load_state_dict_file(path)
    assert "posix.system" in str(info.value) or "os.system" in str(info.value)


def test_A1_build_model_with_malicious_weights_file_never_executes(tmp_path):
    from visionrt.trainer.models import build_model

    path = _evil_files(tmp_path)["zip.pt"]
    with pytest.raises(UnsafeCheckpointError):
        build_model("resnet18", 2, weights=str(path))
    assert not (tmp_path / "PWNED").exists()


# --- A2 legitimate checkpoints holding non-tensor objects -------------------------------------
class CustomConfig:
    def __init__(self) -> None:
        self.lr = 0.1


@pytest.mark.parametrize(
    "extra, global_name",
    [(argparse.Namespace(lr=0.1, arch="resnet18"), "argparse.Namespace"),
     (CustomConfig(), "CustomConfig")],
)
def test_A2_checkpoint_with_namespace_or_custom_class_is_a_typed_error(tmp_path, extra,
                                                                        global_name):
    path = tmp_path / "third_party.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "args": extra}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        weights.load_state_dict_file(path)
    message = str(info.value)
    assert str(path) in message and "non-tensor object" in message
    assert global_name in message


def test_A2_plain_state_dict_and_wrapped_state_dict_still_load(tmp_path):
    state = {"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
               tmp_path / "wrapped.pth")
    loaded = weights.load_state_dict_file(tmp_path / "wrapped.pth")
    assert set(loaded) == set(state)


# --- A3 truncated checkpoints -----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_A3_truncated_checkpoint_is_corrupt_checkpoint_error(tmp_path, suffix):
    from safetensors.torch import save_file

    state = {"w": torch.randn(64, 64), "b": torch.randn(64)}
    full = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save(state, full)
    else:
        save_file(state, str(full))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as info:
        weights.load_state_dict_file(cut)
    message = str(info.value)
    assert str(cut) in message
    if suffix == ".pt":
        assert str(len(data) // 2) in message and "truncated" in message


@pytest.mark.parametrize("payload", [
    b"",
    b"<html>not found</html>",
    b"hello world\n",
])
def test_A3_empty_or_garbage_checkpoint(tmp_path, payload):
    path = tmp_path / "w.pth"
    path.write_bytes(payload)
    with pytest.raises(CorruptCheckpointError, match="w.pth"):
        weights.load_state_dict_file(path)


# --- A4 weights that do not fit ---------------------------------------------------------------
def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def test_A4_mismatch_lists_missing_unexpected_and_shapes():
    model = _tiny()
    state = dict(model.state_dict())
    state.pop("0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["2.weight"] = torch.zeros(5, 4)  # wrong num_classes
    with pytest.raises(WeightsMismatchError) as info:
        weights.check_state_dict(state, model, source="w.safetensors")
    message = str(info.value)
    assert "1 missing (e.g. 0.bias)" in message
    assert "1 unexpected (e.g. extra.weight)" in message
    assert "2.weight: checkpoint (5, 4) vs model (2, 4)" in message
    assert "w.safetensors" in message


def test_A4_integer_tensor_for_a_float_parameter_is_a_mismatch():
    model = _tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros_like(state["0.weight"], dtype=torch.int8)
    with pytest.raises(WeightsMismatchError, match="0.weight"):
        weights.check_state_dict(state, model, source="w.safetensors")


def test_A4_tensor_count_cap(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "bloated.safetensors"
    save_file({f"t{i}": torch.zeros(1) for i in range(50)}, str(path))
    monkeypatch.setattr(weights, "MAX_TENSORS", 20)
    with pytest.raises(CorruptCheckpointError, match="50 tensors exceeds 20"):
        weights.load_state_dict_file(path)


def test_A4_tensor_count_cap_is_checked_from_the_header_before_loading(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors.torch import save_file

    path = tmp_path / "bloated.safetensors"
    save_file({f"t{i}": torch.zeros(1) for i in range(50)}, str(path))
    monkeypatch.setattr(weights, "MAX_TENSORS", 20)

    def must_not_load(*args, **kwargs):
        raise AssertionError("tensors were materialised before the count check")

    monkeypatch.setattr(safetensors.torch, "load_file", must_not_load)
    with pytest.raises(CorruptCheckpointError, match="50 tensors"):
        weights.load_state_dict_file(path)


def test_A4_file_size_cap(tmp_path, monkeypatch):
    path = tmp_path / "big.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    monkeypatch.setattr(weights, "MAX_CHECKPOINT_BYTES", 100)
    with pytest.raises(CorruptCheckpointError, match="big.pth"):
        weights.load_state_dict_file(path)


def test_A4_build_model_with_wrong_num_classes_weights_fails_listing_keys(tmp_path):
    from safetensors.torch import save_file

    from visionrt.trainer.models import build_model

    model = build_model("resnet18", 3, weights="none")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer4")}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsMismatchError, match="layer4"):
        build_model("resnet18", 3, weights=str(path))
