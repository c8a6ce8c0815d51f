"""Read an ONNX file's ``metadata_props`` and external-data references without the onnx package.

The runtime's base install has no ``onnx``; a bare ``.onnx`` file carries its ModelSpec in
``metadata_props["visionrt.spec"]``. ONNX is protobuf, so a ~60-line wire-format walk over the
memory-mapped file finds those strings and every initializer's external-data ``location`` (which
must stay inside the model's directory: CVE-2022-25882 / CVE-2024-27318 class of bugs) while
skipping tensor payloads without copying them.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from visionrt.errors import ModelFileError, UnsafeModelError

# Field numbers from onnx.proto3.
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 5, 15
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA = 13


def read_metadata(path: Path) -> dict[str, str]:
    """The model-level ``metadata_props`` of an ONNX file as a dict."""
    with _mapped(path) as data:
        props: dict[str, str] = {}
        for number, start, end in _fields(data, 0, len(data), path):
            if number == _MODEL_METADATA:
                key, value = _string_pair(data, start, end, path)
                props[key] = value
        return props


def check_external_data(path: Path) -> list[str]:
    """Every external-data location of ``path``'s initializers, checked to stay beside it.

    Raises:
        UnsafeModelError: a location is absolute, climbs out with ``..``, or resolves (through a
            symlink) outside the model's directory.
    """
    root = path.resolve().parent
    locations = []
    with _mapped(path) as data:
        for location in _external_locations(data, path):
            target = (root / location).resolve()
            if Path(location).is_absolute() or root not in target.parents:
                raise UnsafeModelError(
                    f"{path}: initializer data location {location!r} points outside "
                    f"{root}; refusing to load", source=str(path), actual=location,
                    hint="only load models you exported; re-export with external_data=False")
            locations.append(location)
    return locations


def _external_locations(data: mmap.mmap, path: Path) -> Iterator[str]:
    for number, start, end in _fields(data, 0, len(data), path):
        if number != _MODEL_GRAPH:
            continue
        for g_number, g_start, g_end in _fields(data, start, end, path):
            if g_number == _GRAPH_INITIALIZER:
                yield from _tensor_locations(data, g_start, g_end, path)
            elif g_number == _GRAPH_SPARSE_INITIALIZER:
                for s_number, s_start, s_end in _fields(data, g_start, g_end, path):
                    if s_number in (_SPARSE_VALUES, _SPARSE_INDICES):
                        yield from _tensor_locations(data, s_start, s_end, path)


def _tensor_locations(data: mmap.mmap, start: int, end: int, path: Path) -> Iterator[str]:
    for number, f_start, f_end in _fields(data, start, end, path):
        if number == _TENSOR_EXTERNAL_DATA:
            key, value = _string_pair(data, f_start, f_end, path)
            if key == "location":
                yield value


class _mapped:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> mmap.mmap:
        try:
            self.handle = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise ModelFileError(f"cannot read {self.path}: {exc.strerror}",
                                 source=str(self.path)) from exc
        if self.path.stat().st_size == 0:
            self.handle.close()
            raise ModelFileError(f"{self.path} is empty (0 bytes)", source=str(self.path))
        self.map = mmap.mmap(self.handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self.map

    def __exit__(self, *exc: object) -> None:
        self.map.close()
        self.handle.close()


def _fields(data: mmap.mmap, pos: int, end: int, path: Path) -> Iterator[tuple[int, int, int]]:
    """Yield (field number, start, end) of the length-delimited fields in ``data[pos:end]``."""
    while pos < end:
        key, pos = _varint(data, pos, end, path)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos, end, path)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos, end, path)
            if pos + length > end:
                raise ModelFileError(f"{path} is truncated or not an ONNX file",
                                     source=str(path), hint="re-export or re-download the model")
            yield number, pos, pos + length
            pos += length
        else:
            raise ModelFileError(f"{path} is not a valid ONNX (protobuf) file", source=str(path),
                                 hint="re-export the model")


def _varint(data: mmap.mmap, pos: int, end: int, path: Path) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ModelFileError(f"{path} is not a valid ONNX (protobuf) file (truncated?)",
                         source=str(path), hint="re-export or re-download the model")


def _string_pair(data: mmap.mmap, start: int, end: int, path: Path) -> tuple[str, str]:
    strings = {1: "", 2: ""}
    for number, f_start, f_end in _fields(data, start, end, path):
        if number in strings:
            strings[number] = bytes(data[f_start:f_end]).decode("utf-8", "replace")
    return strings[1], strings[2]
