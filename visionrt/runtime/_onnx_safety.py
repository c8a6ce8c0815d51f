"""Refuse ONNX files whose external data reaches outside their directory (rule S5, case A5).

ONNX tensors can keep their bytes in other files (``data_location = EXTERNAL`` with
``external_data`` entries ``location``/``offset``/``length``/``checksum``). The ``location`` field
has allowed path traversal again and again (CVE-2022-25882, CVE-2024-27318, symlinks in
CVE-2026-27489, key injection in CVE-2026-34445). Before an ONNX file goes to a backend, the runtime
calls :func:`check_onnx_external_data`; it reads the protobuf itself (no ``onnx`` package, no torch:
the runtime stays light) and never opens any file other than the model.

Protobuf fields walked (from onnx.proto)::

    ModelProto        graph=7  training_info=20  functions=25
    GraphProto        node=1  initializer=5  sparse_initializer=15
    NodeProto         attribute=5
    AttributeProto    t=5  g=6  tensors=10  graphs=11  sparse_tensor=22  sparse_tensors=23
    FunctionProto     node=7  attribute_proto=11
    TrainingInfoProto initialization=1  algorithm=2
    SparseTensorProto values=1  indices=2
    TensorProto       name=8  external_data=13 (StringStringEntryProto key=1 value=2)
                      data_location=14
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from visionrt.errors import ModelFileError, UnsafeModelError

ALLOWED_KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
MAX_DEPTH = 64
_EXTERNAL = 1

# message name -> {field number: child message name}; fields not listed are skipped unread.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse",
                  23: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "training": {1: "graph", 2: "graph"},
    "sparse": {1: "tensor", 2: "tensor"},
}


@dataclass(frozen=True)
class ExternalReference:
    """One tensor's external-data record."""

    tensor: str
    entries: tuple[tuple[str, str], ...]
    data_location: int


def check_onnx_external_data(path: str | os.PathLike) -> list[Path]:
    """Check every external-data reference of an ONNX file; return the files it needs.

    A location is refused when it is empty, absolute (POSIX or Windows), contains ``..``, passes
    through or is a symlink, or resolves outside the model's directory; unknown external-data keys,
    a non-empty ``basepath`` and negative or non-numeric ``offset``/``length`` are refused too.
    Only ``path`` itself is opened; referenced files are only ``lstat``-ed.

    Args:
        path: the ``.onnx`` file.

    Returns:
        The resolved paths of the external data files (empty for a self-contained model).

    Raises:
        UnsafeModelError: a reference would read outside the model directory.
        ModelFileError: the file is missing, not a protobuf, or references a missing data file.
    """
    model = Path(path)
    if not model.is_file():
        raise ModelFileError(f"ONNX file not found: {model}", source=str(model))
    root = model.resolve().parent
    files: dict[Path, None] = {}
    for ref in _external_references(model):
        files[_check_reference(model, root, ref)] = None
    return list(files)


def _check_reference(model: Path, root: Path, ref: ExternalReference) -> Path:
    where = f"{model}: tensor {ref.tensor!r}"
    entries = dict(ref.entries)
    unknown = sorted(set(entries) - ALLOWED_KEYS)
    if unknown:
        raise UnsafeModelError(
            f"{where} has unknown external-data keys {unknown} (allowed: {sorted(ALLOWED_KEYS)})",
            source=str(model), actual=unknown, hint="re-export the model; do not load it",
        )
    if entries.get("basepath"):
        raise UnsafeModelError(f"{where} sets external-data basepath "
                               f"{entries['basepath']!r}; visionrt resolves data next to the "
                               "model only", source=str(model), actual=entries["basepath"])
    for key in ("offset", "length"):
        if key in entries and not re.fullmatch(r"\d+", entries[key]):
            raise UnsafeModelError(f"{where}: external-data {key} {entries[key]!r} is not a "
                                   "non-negative integer", source=str(model), actual=entries[key])
    location = entries.get("location", "")
    if not location:
        raise UnsafeModelError(f"{where} refers to external data but gives no location",
                               source=str(model), hint="re-export the model")
    return check_location(model, root, location, where)


def check_location(model: Path, root: Path, location: str, where: str) -> Path:
    """Resolve one ``location`` inside ``root`` or raise UnsafeModelError."""

    def refuse(why: str) -> UnsafeModelError:
        return UnsafeModelError(
            f"{where}: external data location {location!r} {why}; visionrt only reads external "
            f"data stored inside the model directory {root}",
            source=str(model), expected=str(root), actual=location,
            hint="re-export the model as a single file or with its data next to it",
        )

    if not location or "\x00" in location:
        raise refuse("is empty or contains a NUL byte")
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise refuse("is an absolute path")
    if ".." in posix.parts or ".." in windows.parts:
        raise refuse("contains '..'")
    current = root
    for part in PurePosixPath(location.replace("\\", "/")).parts:
        current = current / part
        if current.is_symlink():
            raise refuse(f"goes through the symlink {current}")
    target = current.resolve()
    if target != root and root not in target.parents:
        raise refuse(f"resolves to {target}, outside the model directory")
    if not target.is_file():
        raise ModelFileError(f"{where}: external data file {target} is missing",
                             source=str(model), hint="copy the data file next to the model")
    return target


def _external_references(model: Path) -> list[ExternalReference]:
    with open(model, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ModelFileError(f"{model} is empty, not an ONNX model", source=str(model))
        # Offsets into the mapping, never memoryview slices: an exception raised mid-walk must
        # not leave exported buffers behind that keep the mapping from closing.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found: list[ExternalReference] = []
            _walk(data, 0, len(data), "model", 0, found, model)
            return found


def _walk(data: mmap.mmap, start: int, end: int, kind: str, depth: int,
          found: list[ExternalReference], model: Path) -> None:
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{model}: graphs nested deeper than {MAX_DEPTH} levels",
                             source=str(model))
    if kind == "tensor":
        ref = _tensor_reference(data, start, end, model)
        if ref is not None:
            found.append(ref)
        return
    children = _CHILDREN[kind]
    for number, wire, _, f_start, f_end in protobuf_fields(data, start, end, model):
        child = children.get(number)
        if child is not None and wire == 2:
            _walk(data, f_start, f_end, child, depth + 1, found, model)


def _tensor_reference(data: mmap.mmap, start: int, end: int,
                      model: Path) -> ExternalReference | None:
    name, location, entries = "", 0, []
    for number, wire, value, f_start, f_end in protobuf_fields(data, start, end, model):
        if number == 8 and wire == 2:
            name = _text(data, f_start, f_end)
        elif number == 14 and wire == 0:
            location = value
        elif number == 13 and wire == 2:
            entry = {n: _text(data, a, b)
                     for n, w, _, a, b in protobuf_fields(data, f_start, f_end, model)
                     if w == 2 and n in (1, 2)}
            entries.append((entry.get(1, ""), entry.get(2, "")))
    if location != _EXTERNAL and not entries:
        return None
    return ExternalReference(tensor=name, entries=tuple(entries), data_location=location)


def _text(data: mmap.mmap, start: int, end: int) -> str:
    return data[start:end].decode("utf-8", "replace")


def protobuf_fields(data: mmap.mmap, pos: int, end: int, model: Path):
    """Yield (field number, wire type, varint value, start, end) for one protobuf message."""
    while pos < end:
        key, pos = _varint(data, pos, end, model)
        number, wire = key >> 3, key & 7
        value, f_start = 0, pos
        if wire == 0:
            value, pos = _varint(data, pos, end, model)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, f_start = _varint(data, pos, end, model)
            pos = f_start + length
        else:
            raise _malformed(model, f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise _malformed(model, "a field runs past the end of its message")
        yield number, wire, value, f_start, pos


def _varint(data: mmap.mmap, pos: int, end: int, model: Path) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift <= 63:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise _malformed(model, "truncated or oversized varint")


def _malformed(model: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{model} is not a valid ONNX protobuf ({why})", source=str(model),
                          hint="re-export the model")
