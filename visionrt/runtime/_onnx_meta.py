"""Read an ONNX file's ``metadata_props`` and external-data references without the onnx package.

The runtime's base install has no ``onnx``; a bare ``.onnx`` file carries its ModelSpec in
``metadata_props["visionrt.spec"]``. ONNX is protobuf, so a ~60-line wire-format walk over the
memory-mapped file finds those strings while skipping tensor payloads without copying them.
External-data locations (which must stay inside the model's directory: CVE-2022-25882 /
CVE-2024-27318 class of bugs) are checked by ``visionrt.runtime._onnx_safety``.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from visionrt.errors import ModelFileError
from visionrt.runtime._onnx_safety import protobuf_fields

# Field numbers from onnx.proto3.
_MODEL_METADATA = 14


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
    """Every external-data location of ``path``, checked to stay beside it.

    Delegates to :func:`visionrt.runtime._onnx_safety.check_onnx_external_data`, which also walks
    subgraphs, node attributes and functions, refuses symlinks, NUL bytes and injected keys, and
    opens no file but the model.

    Raises:
        UnsafeModelError: a location is absolute, climbs out with ``..``, passes through a
            symlink or resolves outside the model's directory.
        ModelFileError: the file is not a valid ONNX protobuf or a data file is missing.
    """
    from visionrt.runtime._onnx_safety import check_onnx_external_data

    root = path.resolve().parent
    return [str(file.relative_to(root)) for file in check_onnx_external_data(path)]


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
    for number, wire, _, f_start, f_end in protobuf_fields(data, pos, end, path):
        if wire == 2:
            yield number, f_start, f_end


def _string_pair(data: mmap.mmap, start: int, end: int, path: Path) -> tuple[str, str]:
    strings = {1: "", 2: ""}
    for number, f_start, f_end in _fields(data, start, end, path):
        if number in strings:
            strings[number] = bytes(data[f_start:f_end]).decode("utf-8", "replace")
    return strings[1], strings[2]
