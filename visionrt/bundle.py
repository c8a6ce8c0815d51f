"""Bundle: a directory with ``manifest.json`` and the artifact files it describes.

    BUNDLE/
      manifest.json      {"schema_version", "visionrt_version", "spec", "artifacts", "calibration",
                          "source"}
      model.fp32.onnx    one file per artifact; sha256 and I/O recorded in the manifest
      model.int8.onnx
      ...

Loading parses the manifest as JSON data (never evaluated), validates its shape, and checks an
artifact's sha256 *before* its bytes go to a backend. Writing goes to a temporary sibling directory
that is renamed into place, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionrt.errors import BundleError, ModelTamperedError
from visionrt.spec import ModelSpec

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[Any, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorInfo:
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(data["shape"]))


@dataclass(frozen=True)
class Artifact:
    """One model file of a bundle.

    ``target`` says which backends the artifact is meant for: ``"any"``, ``"cpu"`` (e.g. the U8S8
    int8 graph ONNX Runtime's CPU kernels run fast) or ``"tensorrt"`` (e.g. the symmetric S8S8 QDQ
    graph TensorRT needs, or a serialized engine).
    """

    file: str
    format: str
    precision: str
    sha256: str
    bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    batch: dict[str, int] = field(default_factory=lambda: {"min": 1, "max": 1})
    target: str = "any"
    quantization: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    tensorrt: dict[str, Any] | None = None

    @property
    def max_batch(self) -> int:
        return int(self.batch.get("max", 1))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [asdict(t) | {"shape": list(t.shape)} for t in self.inputs]
        data["outputs"] = [asdict(t) | {"shape": list(t.shape)} for t in self.outputs]
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        try:
            return cls(
                file=str(data["file"]),
                format=str(data["format"]),
                precision=str(data["precision"]),
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
                inputs=tuple(TensorInfo.from_dict(t) for t in data["inputs"]),
                outputs=tuple(TensorInfo.from_dict(t) for t in data["outputs"]),
                batch={k: int(v) for k, v in data.get("batch", {"min": 1, "max": 1}).items()},
                target=str(data.get("target", "any")),
                quantization=data.get("quantization"),
                parity=data.get("parity"),
                tensorrt=data.get("tensorrt"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"malformed artifact entry {data!r}: {exc}") from exc


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated bundle directory."""

    path: Path
    spec: ModelSpec
    artifacts: tuple[Artifact, ...]
    calibration: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    visionrt_version: str = ""

    def artifact_path(self, artifact: Artifact) -> Path:
        return self.path / artifact.file

    def find(self, *, precision: str | None = None, format: str | None = None,
             target: str | None = None) -> list[Artifact]:
        return [
            a for a in self.artifacts
            if (precision is None or a.precision == precision)
            and (format is None or a.format == format)
            and (target is None or a.target in (target, "any"))
        ]

    def verified_path(self, artifact: Artifact) -> Path:
        """The artifact's path after checking that its sha256 matches the manifest."""
        path = self.artifact_path(artifact)
        check_digest(path, artifact.sha256)
        return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_digest(path: Path, expected: str) -> None:
    if not path.is_file():
        raise BundleError(f"artifact {path} is listed in the manifest but missing",
                          source=str(path), hint="re-run `visionrt export`")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelTamperedError(
            f"{path}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}...; "
            "the file was modified or swapped",
            source=str(path), expected=expected, actual=actual,
            hint="re-export the bundle from its run; never load an artifact you did not build",
        )


def manifest_dict(
    spec: ModelSpec,
    artifacts: tuple[Artifact, ...] | list[Artifact],
    calibration: dict[str, Any] | None,
    source: dict[str, Any] | None,
) -> dict[str, Any]:
    from visionrt import __version__

    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "visionrt_version": __version__,
        "spec": spec.to_dict(),
        "artifacts": [a.to_dict() for a in artifacts],
        "calibration": calibration,
        "source": source,
    }


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and validate ``path/manifest.json``.

    Raises:
        BundleError: the directory or manifest is missing or malformed, or an artifact file is
            missing or escapes the bundle directory.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root}", source=str(root),
                          hint="create one with `visionrt export RUN --out BUNDLE`")
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}; it is not a visionrt bundle",
                          source=str(root), hint="create one with `visionrt export`")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}",
                          source=str(manifest_path)) from exc
    return _bundle_from_manifest(root, data)


def _bundle_from_manifest(root: Path, data: Any) -> Bundle:
    where = str(root / MANIFEST)
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object", source=where)
    version = data.get("schema_version")
    if version != MANIFEST_SCHEMA_VERSION:
        raise BundleError(
            f"{where}: manifest schema_version {version!r} is not supported "
            f"(this visionrt reads {MANIFEST_SCHEMA_VERSION})",
            source=where, expected=MANIFEST_SCHEMA_VERSION, actual=version,
            hint="re-export the bundle with this visionrt version",
        )
    for key in ("spec", "artifacts"):
        if key not in data:
            raise BundleError(f"{where}: missing key {key!r}", source=where)
    spec = ModelSpec.from_dict(data["spec"])
    if not isinstance(data["artifacts"], list):
        raise BundleError(f"{where}: 'artifacts' must be a list", source=where)
    artifacts = tuple(Artifact.from_dict(a) for a in data["artifacts"])
    for artifact in artifacts:
        _check_inside(root, artifact.file)
    return Bundle(path=root, spec=spec, artifacts=artifacts,
                  calibration=data.get("calibration"), source=data.get("source"),
                  visionrt_version=str(data.get("visionrt_version", "")))


def _check_inside(root: Path, name: str) -> None:
    candidate = (root / name).resolve()
    if Path(name).is_absolute() or root.resolve() not in candidate.parents:
        raise BundleError(f"manifest entry {name!r} points outside the bundle {root}",
                          source=name, hint="the manifest was tampered with; re-export")


def describe_artifact(path: Path, **fields: Any) -> Artifact:
    """Build an Artifact entry for a file already written inside a bundle directory."""
    return Artifact(file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size, **fields)


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; on success it atomically becomes ``out``.

    On any exception the temporary directory is removed and ``out`` is left as it was.
    """
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists", source=str(out),
                          hint="choose another --out or pass --overwrite")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise BundleError(f"cannot write into {parent}: {exc.strerror}", source=str(parent),
                          hint="choose a writable --out directory") from exc
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(
    directory: Path,
    spec: ModelSpec,
    artifacts: list[Artifact],
    calibration: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    path = directory / MANIFEST
    text = json.dumps(manifest_dict(spec, artifacts, calibration, source), indent=2)
    path.write_text(text + "\n", encoding="utf-8")
    return path
