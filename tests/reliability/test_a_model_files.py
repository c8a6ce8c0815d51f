"""Catalogue A1-A5: untrusted model files (checkpoints, safetensors, ONNX external data).

A6-A11 (I/O vs manifest, TensorRT engines, providers, doctor) are in test_a_engines.py.
"""

from __future__ import annotations

import argparse
import builtins
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from visionrt.errors import (  # noqa: E402
    CorruptCheckpointError,
    ModelFileError,
    UnsafeCheckpointError,
    UnsafeModelError,
    WeightsMismatchError,
)
from visionrt.runtime._onnx_safety import check_onnx_external_data  # noqa: E402
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


# --- A5 ONNX external data --------------------------------------------------------------------
def _model_with_external(folder: Path, *, subgraph: bool = False, constant: bool = False,
                         name: str = "model.onnx", location: str = "model.data") -> Path:
    """A small ONNX model whose tensors live in ``location`` next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    if constant:
        value = numpy_helper.from_array(np.full((1, 4), 2, np.float32), "cvalue")
        nodes = [helper.make_node("Constant", [], ["c"], value=value),
                 helper.make_node("MatMul", ["x", "w"], ["m"]),
                 helper.make_node("Add", ["m", "c"], ["y"])]
    if subgraph:
        inner_w = numpy_helper.from_array(np.ones((4, 4), np.float32), "inner_w")
        branch = helper.make_graph([helper.make_node("MatMul", ["x", "inner_w"], ["b"])],
                                   "then", [], [helper.make_tensor_value_info(
                                       "b", TensorProto.FLOAT, [1, 4])], [inner_w])
        other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                  [helper.make_tensor_value_info("e", TensorProto.FLOAT,
                                                                 [1, 4])])
        cond = numpy_helper.from_array(np.array(True), "cond")
        nodes = [helper.make_node("If", ["cond"], ["i"], then_branch=branch, else_branch=other),
                 helper.make_node("MatMul", ["i", "w"], ["y"])]
        graph = helper.make_graph(nodes, "g", [x], [y], [w, cond])
    else:
        graph = helper.make_graph(nodes, "g", [x], [y], [w])
    model = helper.make_model(graph)
    path = folder / name
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return path


def _set_locations(path: Path, location: str, *, key: str = "location",
                   extra: tuple[str, str] | None = None) -> None:
    """Rewrite every external-data entry of ``path`` (a hostile edit of the protobuf)."""
    model = onnx.load(path, load_external_data=False)
    tensors = list(onnx.external_data_helper._get_all_tensors(model))
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.key, entry.value = key, location
        if extra is not None:
            item = tensor.external_data.add()
            item.key, item.value = extra
    path.write_bytes(model.SerializeToString())


def test_A5_legitimate_external_data_inside_the_folder_is_accepted(tmp_path):
    path = _model_with_external(tmp_path / "m")
    assert check_onnx_external_data(path) == [(tmp_path / "m" / "model.data").resolve()]
    single = tmp_path / "single.onnx"
    onnx.save(onnx.load(path), single)  # loads the data back in: self-contained
    assert check_onnx_external_data(single) == []


def test_A5_external_data_in_a_subfolder_is_accepted(tmp_path):
    path = _model_with_external(tmp_path / "m")
    (tmp_path / "m" / "weights").mkdir()
    os.replace(tmp_path / "m" / "model.data", tmp_path / "m" / "weights" / "model.data")
    _set_locations(path, "weights/model.data")
    assert check_onnx_external_data(path) == [(tmp_path / "m" / "weights" / "model.data")
                                              .resolve()]


@pytest.mark.parametrize(
    "location, fragment",
    [("../../etc/passwd", "'..'"), ("../secret.bin", "'..'"), ("sub/../../x", "'..'"),
     ("/etc/passwd", "absolute"), ("C:\\Windows\\win.ini", "absolute"),
     ("\\\\server\\share\\x", "absolute"), ("..\\..\\x", "'..'"), ("", "no location")],
)
@pytest.mark.parametrize("where", ["initializer", "subgraph", "constant"])
def test_A5_escaping_external_data_location_is_refused(tmp_path, location, fragment, where):
    path = _model_with_external(tmp_path / "m", subgraph=where == "subgraph",
                                constant=where == "constant")
    _set_locations(path, location)
    with pytest.raises(UnsafeModelError, match=fragment) as info:
        check_onnx_external_data(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_A5_symlinked_external_data_is_refused(tmp_path, target):
    path = _model_with_external(tmp_path / "m")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    link_target = secret if target == "outside" else tmp_path / "m" / "model.data"
    os.symlink(link_target, tmp_path / "m" / "link.data")
    _set_locations(path, "link.data")
    with pytest.raises(UnsafeModelError, match="symlink"):
        check_onnx_external_data(path)


def test_A5_symlinked_directory_in_the_location_is_refused(tmp_path):
    path = _model_with_external(tmp_path / "m")
    (tmp_path / "elsewhere").mkdir()
    os.replace(tmp_path / "m" / "model.data", tmp_path / "elsewhere" / "model.data")
    os.symlink(tmp_path / "elsewhere", tmp_path / "m" / "sub")
    _set_locations(path, "sub/model.data")
    with pytest.raises(UnsafeModelError, match="symlink"):
        check_onnx_external_data(path)


@pytest.mark.parametrize(
    "extra, fragment",
    [(("basepath", "/etc"), "basepath"), (("__class__", "x"), "unknown external-data keys"),
     (("offset", "-5"), "offset"), (("length", "1e9"), "length")],
)
def test_A5_external_data_key_injection_is_refused(tmp_path, extra, fragment):
    path = _model_with_external(tmp_path / "m")
    _set_locations(path, "model.data", extra=extra)
    with pytest.raises(UnsafeModelError, match=fragment):
        check_onnx_external_data(path)


def test_A5_no_file_outside_the_model_directory_is_opened(tmp_path, monkeypatch):
    path = _model_with_external(tmp_path / "m")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    _set_locations(path, str(secret))
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(io, "open", spy_open)
    with pytest.raises(UnsafeModelError):
        check_onnx_external_data(path)
    assert all(Path(p).resolve() == path.resolve() for p in opened), opened


@pytest.mark.parametrize("payload", [b"", b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x3b"])
def test_A5_garbage_onnx_is_a_model_file_error(tmp_path, payload):
    path = tmp_path / "bad.onnx"
    path.write_bytes(payload)
    with pytest.raises(ModelFileError, match="bad.onnx"):
        check_onnx_external_data(path)


def test_A5_walk_finds_the_same_tensors_as_onnx(tmp_path):
    path = _model_with_external(tmp_path / "m", subgraph=True)
    model = onnx.load(path, load_external_data=False)
    expected = sorted(t.name for t in onnx.external_data_helper._get_all_tensors(model)
                      if onnx.external_data_helper.uses_external_data(t))
    from visionrt.runtime._onnx_safety import _external_references

    assert sorted(r.tensor for r in _external_references(path)) == expected
    assert "inner_w" in expected


def _mutations():
    from hypothesis import strategies as st

    return st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8),
                     st.sampled_from(["flip", "insert", "truncate", "raw"]))


@pytest.fixture(scope="module")
def real_onnx_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("onnx_seed")
    path = _model_with_external(folder / "m", subgraph=True, constant=True)
    return path.read_bytes()


def _readers():
    from visionrt.runtime import _onnx_meta

    return {"_onnx_safety.check_onnx_external_data": check_onnx_external_data,
            "runtime._onnx_meta.read_metadata": _onnx_meta.read_metadata,
            "runtime._onnx_meta.check_external_data": _onnx_meta.check_external_data}


@pytest.mark.parametrize("reader", ["_onnx_safety.check_onnx_external_data",
                                    "runtime._onnx_meta.check_external_data"])
def test_A5_nul_byte_in_a_location_is_a_typed_error(tmp_path, reader):
    path = _model_with_external(tmp_path / "m")
    _set_locations(path, "model.data\x00/../../etc/passwd")
    with pytest.raises(ModelFileError):
        _readers()[reader](path)


@pytest.mark.parametrize("reader", ["_onnx_safety.check_onnx_external_data",
                                    "runtime._onnx_meta.read_metadata",
                                    "runtime._onnx_meta.check_external_data"])
def test_A5_protobuf_walks_never_crash_on_hostile_bytes(real_onnx_bytes, tmp_path, reader):
    """E2: the protobuf readers only ever raise ModelFileError, whatever the bytes."""
    from hypothesis import HealthCheck, given, settings

    read = _readers()[reader]
    path = tmp_path / "fuzzed.onnx"
    (tmp_path / "model.data").write_bytes(b"\x00" * 4096)

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_mutations())
    def check(mutation):
        position, payload, kind = mutation
        data = bytearray(real_onnx_bytes)
        at = position % len(data)
        if kind == "flip":
            data[at:at + len(payload)] = payload
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "truncate":
            del data[at:]
        else:
            data = bytearray(payload * (position % 50 + 1))
        path.write_bytes(bytes(data) or b"\x00")
        try:
            read(path)
        except ModelFileError:
            pass

    check()
