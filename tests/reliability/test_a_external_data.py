"""Catalogue A5: ONNX external data that would leave the model's folder (the protobuf walk of
runtime/_onnx_safety.py, torch- and onnx-free; A1-A4 are in test_a_model_files.py).
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from visionrt.errors import (  # noqa: E402
    ModelFileError,
    UnsafeModelError,
)
from visionrt.runtime._onnx_safety import check_onnx_external_data  # noqa: E402


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
