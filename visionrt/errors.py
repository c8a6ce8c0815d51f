"""The VisionRTError family.

Every error names the object at fault (``source``: a file, CSV row, batch index, tensor name), what
was expected and what was found, and its message says what to do. The CLI prints ``str(error)`` on
one line and exits 1.
"""

from __future__ import annotations


class VisionRTError(Exception):
    """Base class of every error visionrt raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        source: object = None,
        expected: object = None,
        actual: object = None,
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.expected = expected
        self.actual = actual
        self.hint = hint
        text = message if hint is None else f"{message}; {hint}"
        super().__init__(text)


class MissingDependencyError(VisionRTError, ImportError):
    """An optional package is not installed; the message names the pip extra."""


class ConfigError(VisionRTError, ValueError):
    """A configuration value is out of range or inconsistent."""


class UnknownArchError(ConfigError):
    """The architecture name is not known to timm."""


class WeightsNotFoundError(VisionRTError):
    """Pretrained weights were asked for but none can be found offline."""


# --- model files -------------------------------------------------------------------------------
class ModelFileError(VisionRTError):
    """A model, checkpoint, bundle or engine file cannot be used."""


class UnsafeCheckpointError(ModelFileError):
    """A checkpoint would need arbitrary unpickling; it was refused, nothing was executed."""


class CorruptCheckpointError(ModelFileError):
    """A checkpoint is truncated or unreadable."""


class WeightsMismatchError(ModelFileError):
    """Checkpoint keys, shapes or dtypes do not fit the architecture."""


class BundleError(ModelFileError):
    """A bundle directory or manifest is missing, malformed or inconsistent."""


class ModelTamperedError(ModelFileError):
    """An artifact's sha256 does not match its manifest entry."""


class UnsafeModelError(ModelFileError):
    """An ONNX file references data outside its directory."""


class IncompatibleEngineError(ModelFileError):
    """A TensorRT engine was built for another TensorRT version or GPU."""


class ProviderUnavailableError(ModelFileError):
    """A requested execution provider / device did not load."""


class BackendUnavailableError(VisionRTError):
    """A requested backend cannot run here (package or device missing)."""


# --- images ------------------------------------------------------------------------------------
class ImageError(VisionRTError):
    """An image could not be decoded into RGB pixels."""


class ImageDecodeError(ImageError):
    """Not a recognised image, a directory, empty, or otherwise undecodable."""


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel or file-size limit (decompression bomb guard)."""


class UnsupportedFormatError(ImageError):
    """The detected format is not on the allowlist."""


class TruncatedImageError(ImageError):
    """The file ends before the image data does."""


class InputValidationError(VisionRTError, ValueError):
    """An in-memory input (array, batch) has the wrong dtype, shape, range or values."""


# --- serving -----------------------------------------------------------------------------------
class QueueFullError(VisionRTError):
    """The micro-batcher's bounded queue is full; retry later."""


class RequestTimeoutError(VisionRTError, TimeoutError):
    """A request waited longer than its timeout and was dropped unrun."""


class ResourceExhaustedError(VisionRTError):
    """A backend ran out of memory for a batch."""


class RuntimeClosedError(VisionRTError):
    """The classifier or batcher was closed."""


class InferenceError(VisionRTError):
    """A backend failed while running a batch."""


class ServerError(VisionRTError):
    """Triton Inference Server could not start, load the model, or answer a request."""


# --- training ----------------------------------------------------------------------------------
class DataValidationError(VisionRTError, ValueError):
    """A data set (folder or CSV) has problems; the message lists the first offenders."""


class TrainingDivergedError(VisionRTError):
    """The loss was non-finite for too many consecutive steps."""


class TrainingInterruptedError(VisionRTError):
    """Training was stopped by SIGTERM / SIGINT; the last epoch's checkpoint is kept."""


class CheckpointWriteError(VisionRTError):
    """A checkpoint could not be written; the previous one was kept."""


class ParityError(VisionRTError):
    """An exported artifact disagrees with the PyTorch model beyond tolerance."""


def check_value(ok: bool, name: str, value: object, expected: object, *, owner: str = "") -> None:
    """Raise ConfigError unless ok, naming the value as the user gave it.

    A ``name`` that is a command-line flag (``"--batch-sizes"``) gives
    ``"--batch-sizes 0,8 is invalid; expected ..."``, the value written as typed; any other name
    gives ``"<owner><name> = <value!r> is invalid; expected ..."``, ``owner`` prefixing the field
    name, e.g. ``"ModelSpec."``. The one validation helper behind every frozen config (ModelSpec,
    TrainConfig, ExportConfig, BenchConfig).
    """
    if not ok:
        subject = (f"{name} {_as_typed(value)}" if name.startswith("--")
                   else f"{owner}{name} = {value!r}")
        wanted = (f"one of {', '.join(map(str, expected))}" if isinstance(expected, (tuple, list))
                  else expected)
        raise ConfigError(f"{subject} is invalid; expected {wanted}",
                          source=name, expected=expected, actual=value)


def cli_flag(name: str) -> str:
    """The command-line flag of a config field: ``batch_sizes`` -> ``--batch-sizes``."""
    return "--" + name.replace("_", "-")


def _as_typed(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "''"
    return "''" if value is None or value == "" else str(value)
