"""Sensitivity-guided mixed precision: keep the int8 graph's most harmful layer chains in float.

A *chain* is a run of convolutions linked through their activations (expand conv -> ReLU6 ->
depthwise conv -> ReLU6 in MobileNet/EfficientNet blocks), ending before a linear convolution.
Only whole chains stay in float: ONNX Runtime's quantizer folds a ``Clip`` into the quantized
output of the conv before it, so a float conv that reads a quantized conv's clipped output loses
the clip and computes garbage (top-1 agreement collapses when only a depthwise conv is kept in
float). Keeping a conv in float therefore always keeps the conv that feeds it through its
activation in float too.

The search is greedy on the calibration images: the all-int8 graph first; if it misses the target
under the gate's rule (top-1 agreement on the samples fp32 is confident about, and top-5
containment) or drifts further than :data:`MAX_KL` from fp32, each chain is scored once by how much keeping it in float lowers the KL divergence from
fp32, and chains are added in that order until the target is met or ``max_chains`` are float;
when it is never met, the number of chains that came closest to fp32 (lowest KL) is kept.
The held-out verification images stay untouched, so the parity gate still judges the result on
images the search never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ACTIVATIONS = ("Clip", "Relu")
# A graph must also stay within this mean KL(fp32 || int8) on the calibration images: their few
# confident samples rarely flip even when the held-out ones will, so agreement alone would stop
# the search too early. The setting sits between the Lite0 U8S8 graph (passes on held-out images)
# and its S8S8 graph (flips held-out confident answers); benchmarks/int8_recipes.py shows both.
MAX_KL = 0.02


@dataclass(frozen=True)
class Score:
    """How an int8 graph's logits compare with fp32's on the search images."""

    agreement: float  # top-1, all samples
    kl: float  # mean KL(fp32 || int8) of the softmax outputs
    confident: float | None = None  # top-1 on samples fp32 gives >= gate.CONFIDENT
    top5: float = 1.0  # share of samples whose top-5 holds fp32's top-1

    def meets(self, target: float) -> bool:
        """The gate's rule without labels, with ``target`` for its thresholds (top-1 on the
        confident samples, all samples when none is confident; top-5 containment), and a mean
        KL divergence of at most :data:`MAX_KL`."""
        top1 = self.agreement if self.confident is None else self.confident
        return top1 >= target and self.top5 >= target and self.kl <= MAX_KL

    def to_dict(self) -> dict[str, float | None]:
        return {"top1_agreement": round(self.agreement, 4),
                "confident_top1_agreement": None if self.confident is None else round(
                    self.confident, 4), "top5_containment": round(self.top5, 4),
                "kl": round(self.kl, 5)}


@dataclass(frozen=True)
class MixedPrecision:
    """The outcome of :func:`search`."""

    target: float
    met: bool
    float_chains: tuple[tuple[str, ...], ...]
    steps: tuple[dict[str, Any], ...] = ()
    candidates: int = 0
    speed: dict[str, Any] = field(default_factory=dict)

    @property
    def float_nodes(self) -> list[str]:
        return [name for chain in self.float_chains for name in chain]

    def to_record(self) -> dict[str, Any]:
        """The manifest's ``mixed_precision`` record."""
        return {"target_top1_agreement": self.target, "target_met": self.met,
                "search_images": "calibration", "candidate_chains": self.candidates,
                "float_chains": [list(c) for c in self.float_chains],
                "float_nodes": self.float_nodes, "steps": list(self.steps),
                "speed": self.speed}


def chains(proto: Any) -> list[list[str]]:
    """Node names of every conv chain of the graph (conv, activation, conv, activation, ...)."""
    nodes = list(proto.graph.node)
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {o: n for n in nodes for o in n.output}

    def activation_of(conv: Any) -> Any | None:
        after = consumers.get(conv.output[0], [])
        return after[0] if len(after) == 1 and after[0].op_type in ACTIVATIONS else None

    def linked_from(conv: Any) -> bool:
        """Whether ``conv`` reads the activation of another conv (so it is inside a chain)."""
        act = producers.get(conv.input[0])
        source = producers.get(act.input[0]) if act is not None and act.input else None
        return (act is not None and act.op_type in ACTIVATIONS and source is not None
                and source.op_type == "Conv" and activation_of(source) is act)

    found = []
    for conv in (n for n in nodes if n.op_type == "Conv" and not linked_from(n)):
        chain, current = [], conv
        while current is not None and (act := activation_of(current)) is not None:
            chain += [current.name, act.name]
            after = consumers.get(act.output[0], [])
            current = after[0] if len(after) == 1 and after[0].op_type == "Conv" else None
        if chain:
            found.append(chain)
    return found


def stem_chain(proto: Any) -> list[str]:
    """The chain that starts at the graph's first Conv (the stem: the convolution on the image and
    the first depthwise conv after it), or [] when the first Conv starts none."""
    first = next((n.name for n in proto.graph.node if n.op_type == "Conv"), None)
    return next((chain for chain in chains(proto) if chain[0] == first), [])


def score(reference: np.ndarray, candidate: np.ndarray) -> Score:
    """Agreement (all, confident, top-5) and mean KL of softmax(candidate) from softmax(reference)."""
    from visionrt.gate import CONFIDENT

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    ref, out = log_softmax(reference), log_softmax(candidate)
    kl = float(np.mean(np.sum(np.exp(ref) * (ref - out), axis=1)))
    agrees = ref.argmax(1) == out.argmax(1)
    sure = np.exp(ref.max(axis=1)) >= CONFIDENT
    top5 = np.argsort(-out, axis=1)[:, :5] == ref.argmax(1)[:, None]
    return Score(float(np.mean(agrees)), kl,
                 float(np.mean(agrees[sure])) if sure.any() else None,
                 float(np.mean(top5.any(axis=1))))


def search(build: Callable[[Sequence[str]], Path], measure: Callable[[Path], Score],
           candidates: list[list[str]], *, target: float, max_chains: int) -> MixedPrecision:
    """Greedy: keep chains in float, most harmful first, until ``measure`` meets ``target``
    (:meth:`Score.meets`: the gate's rule with ``target`` as its thresholds).

    Args:
        build: writes the int8 graph with the given nodes kept in float; returns its path.
        measure: scores a graph on the search images.
        candidates: the chains that may stay in float.
        target: top-1 agreement (on confident samples) and top-5 containment to reach.
        max_chains: at most this many chains stay in float (0: int8 only, no search).
    """
    base = measure(build(()))
    steps = [{"float_chains": 0, **base.to_dict()}]
    if base.meets(target) or not candidates or max_chains == 0:
        return MixedPrecision(target, base.meets(target), (), tuple(steps), len(candidates))
    gains = []
    for chain in candidates:  # sensitivity: how much floating this chain alone helps
        gains.append(base.kl - measure(build(chain)).kl)
    order = [candidates[i] for i in np.argsort(gains)[::-1]]
    kept: list[tuple[str, ...]] = []
    best = (base.kl, 0)  # when the target stays out of reach: the prefix closest to fp32
    for chain in order[:max_chains]:
        kept.append(tuple(chain))
        current = measure(build([n for c in kept for n in c]))
        steps.append({"float_chains": len(kept), "added": chain[0], **current.to_dict()})
        log.info("mixed precision: %d chains in float, top-1 agreement %.4f, KL %.4f",
                 len(kept), current.agreement, current.kl)
        if current.meets(target):
            return MixedPrecision(target, True, tuple(kept), tuple(steps), len(candidates))
        best = min(best, (current.kl, len(kept)))
    return MixedPrecision(target, False, tuple(kept[:best[1]]), tuple(steps), len(candidates))


def speed_cost(int8_graph: Path, mixed_graph: Path, images: np.ndarray, *, batch: int = 16,
               rounds: int = 3, seconds: float = 0.3) -> dict[str, Any]:
    """Throughput of the mixed graph relative to the all-int8 one, measured side by side.

    Both graphs run on the CPU backend the runtime prefers for int8 (OpenVINO when installed,
    else ONNX Runtime); rounds alternate between them so that load from other processes hits both
    alike, and the ratio is the median of the per-round ratios.
    """
    import time

    from visionrt.runtime.base import BackendConfig, backend_unavailable_reason, load_backend

    backend = next((b for b in ("openvino", "onnxruntime")
                    if backend_unavailable_reason(b, "cpu") is None), "onnxruntime")
    chunk = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))
    config = BackendConfig(device="cpu", precision="int8", max_batch=batch, compile_cache=False)
    with load_backend(backend, int8_graph, None, config) as a, \
            load_backend(backend, mixed_graph, None, config) as b:
        rates: dict[str, list[float]] = {"int8": [], "mixed": []}
        for _ in range(rounds):
            for name, runner in (("int8", a), ("mixed", b)):
                runner.infer(chunk)  # warm
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    runner.infer(chunk)
                    done += batch
                rates[name].append(done / (time.perf_counter() - start))
    ratios = [m / i for m, i in zip(rates["mixed"], rates["int8"], strict=True)]
    return {"backend": backend, "batch": batch, "rounds": rounds,
            "int8_images_per_s": round(float(np.median(rates["int8"])), 1),
            "mixed_images_per_s": round(float(np.median(rates["mixed"])), 1),
            "relative_throughput": round(float(np.median(ratios)), 3)}
