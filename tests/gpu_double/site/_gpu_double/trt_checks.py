"""What ``build_serialized_network`` refuses, as one error line (None: the build goes ahead)."""

from __future__ import annotations

from typing import Any

from _gpu_double import trt_api
from _gpu_double.state import state


def build_problems(network: Any, config: Any) -> str | None:
    if network.onnx is None:
        return "Network has no layers: parse an ONNX model first"
    flag = trt_api.builder_flags()
    strongly_typed = trt_api.major() >= 11 or network.get_flag(
        trt_api.network_flags().STRONGLY_TYPED)
    if not strongly_typed:
        # TensorRT 10 would build a weakly typed engine and pick precisions itself; visionrt's
        # contract is that the graph's types decide.
        raise state().violate("build of a weakly typed network: create it with "
                              "NetworkDefinitionCreationFlag.STRONGLY_TYPED on TensorRT 10")
    precision = [n for n in trt_api.PRECISION_FLAGS if hasattr(flag, n)
                 and config.get_flag(getattr(flag, n))]
    if precision:
        return (f"BuilderFlag {', '.join(sorted(precision))} is not allowed with a strongly typed "
                "network: precision comes from the network's types")
    if not 0 <= int(config.builder_optimization_level) <= 5:
        return f"builder optimization level {config.builder_optimization_level} not in 0..5"
    if config.get_memory_pool_limit(trt_api.MemoryPoolType.WORKSPACE) < 1 << 20:
        return "insufficient workspace: no tactic fits in the WORKSPACE pool limit"
    return _profile_problems(network, config)


def _profile_problems(network: Any, config: Any) -> str | None:
    dynamic = [t for t in network.inputs if any(d < 0 for d in t.shape)]
    if dynamic and not config.profiles:
        return (f"Network has dynamic or shape inputs, but no optimization profile has been "
                f"defined (input {dynamic[0].name})")
    names = {t.name for t in network.inputs}
    for index, profile in enumerate(config.profiles):
        for name in profile.shapes:
            if name not in names:
                return f"optimization profile {index} names {name!r}, which is no network input"
        for tensor in dynamic:
            if tensor.name not in profile.shapes:
                return (f"input {tensor.name} has dynamic dimensions but no shape in "
                        f"optimization profile {index}: missing shape information")
        for tensor in network.inputs:
            for shape in profile.shapes.get(tensor.name, ()):
                if len(shape) != len(tensor.shape) or any(
                        d >= 0 and d != s for d, s in zip(tensor.shape, shape, strict=True)):
                    return (f"profile {index} shape {tuple(shape)} for {tensor.name} does not "
                            f"match the network input {tuple(tensor.shape)}")
    return None
