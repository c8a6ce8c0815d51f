"""visionrt's default CPU path against every peer's defaults, side by side in one run.

For each model (Lite0, ResNet50; random weights), batch size and precision it measures, in
interleaved rounds on the same input (random uint8 NHWC batch, the graph's own input):

- PyTorch eager (torch.inference_mode), same architecture, same preprocessing, with torch's default
  threads and with one thread (the faster is the baseline);
- ONNX Runtime defaults: ``onnxruntime.InferenceSession(file)``, nothing else set;
- OpenVINO defaults: ``openvino.Core().compile_model(file, "CPU")``, called directly
  (its default hint on fp32 graphs executes bf16 on AVX512-BF16/AMX CPUs: reported as such);
- visionrt's default path: ``Classifier.load(bundle, precision=P)`` with every other option at its
  default, called on the batch (``clf(batch)``); at batch > 1 also with ``performance=
  "throughput"`` (OpenVINO streams + async requests, each call's batch split across streams).

    python benchmarks/make_models.py
    python benchmarks/cpu_peers.py [--models lite0,resnet50] [--batch-sizes 1,16]
        [--precisions fp32,int8] [--rounds 3] [--seconds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from _common import DEFAULT_WORK, bundle_path, loadavg, write_report
from _contest import Contestant, paired_ratio, print_group, run_rounds

from visionrt.bench.environment import environment
from visionrt.bench.inputs import random_batch
from visionrt.bundle import load_bundle

PEERS = ("onnxruntime default", "openvino default")


def ort_default(path: Path, batch: np.ndarray, precision: str) -> Contestant:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))  # the peer's defaults: nothing set
    name = session.get_inputs()[0].name
    return Contestant("onnxruntime default", lambda: session.run(None, {name: batch}),
                      len(batch), precision, {"options": "InferenceSession(file)"})


def openvino_default(path: Path, batch: np.ndarray, precision: str) -> Contestant:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU")  # the peer's defaults: nothing set
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    executed = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint, hint)
    if precision == "int8":
        executed = f"int8+{executed}"  # quantized ops int8, the rest in the hint's precision
    details = {"performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
               "num_streams": str(compiled.get_property("NUM_STREAMS")),
               "inference_precision_hint": hint}
    return Contestant("openvino default", lambda: compiled(batch), len(batch), executed, details)


def visionrt_default(bundle: Path, batch: np.ndarray, precision: str,
                     performance: str = "latency") -> Contestant:
    from visionrt.runtime.classifier import Classifier

    clf = Classifier.load(bundle, precision=precision, performance=performance)
    info = dict(clf.info())
    mode = "" if performance == "latency" else f", {performance}"
    return Contestant(f"visionrt ({info.get('backend')}{mode})", lambda: clf(batch), len(batch),
                      str(info.get("precision")), {k: v for k, v in info.items()
                                                   if isinstance(v, (str, int, float, bool))})


def torch_eager(bundle: Path, batch: np.ndarray, threads: int | None = None) -> Contestant:
    import torch

    from visionrt.bench.baseline import load_torch_model, step_factory

    model, spec, how = load_torch_model(bundle)
    step_for, _ = step_factory(model, spec, torch.device("cpu"), torch)
    run = step_for(batch)
    count = threads or torch.get_num_threads()

    def step() -> Any:
        torch.set_num_threads(count)  # process-global: set per call, the variants interleave
        return run()

    name = "torch eager" + (f" ({threads} thread)" if threads else "")
    return Contestant(name, step, len(batch), "fp32", {"threads": count, "model": how})


def bench_group(bundle: Path, precision: str, batch_size: int, torch_cache: dict,
                args: argparse.Namespace) -> dict[str, Any]:
    manifest = load_bundle(bundle)
    artifact = next(a for a in manifest.find(precision=precision, format="onnx", target="cpu"))
    path = bundle / artifact.file
    batch = random_batch(manifest.spec, batch_size, seed=0)  # what `visionrt bench` feeds
    contestants = [ort_default(path, batch, precision), openvino_default(path, batch, precision)]
    # visionrt's defaults (latency mode); at batch > 1 also its throughput mode (OpenVINO streams
    # with async requests, one slice of the batch per stream): one keyword, not a tuning session.
    modes = ("latency", "throughput") if batch_size > 1 else ("latency",)
    for wanted in _visionrt_precisions(precision):
        for mode in modes:
            try:
                contestants.append(visionrt_default(bundle, batch, wanted, mode))
            except Exception as exc:  # noqa: BLE001 - report, go on with the other contestants
                print(f"  visionrt precision={wanted} {mode}: not measured ({exc})")
    key = (bundle.name, batch_size)
    if args.torch and key not in torch_cache:
        # torch's default threads and one thread: with 2 threads its OpenMP pool spin-waits badly
        # on a busy 2-core host; the faster of the two (by median) is the baseline.
        contestants += [torch_eager(bundle, batch), torch_eager(bundle, batch, threads=1)]
    run_rounds(contestants, rounds=args.rounds, seconds=args.seconds)
    title = f"{bundle.name} {precision} batch {batch_size} (load {loadavg()})"
    print_group(title, contestants)
    eager = [c.to_dict() for c in contestants if c.name.startswith("torch eager")]
    if eager:
        torch_cache[key] = max(eager, key=lambda r: r["throughput_median"])
    rows = [c.to_dict() for c in contestants if not c.name.startswith("torch eager")]
    return {"model": bundle.name, "file": artifact.file, "precision": precision,
            "batch_size": batch_size, "contestants": rows, "torch": torch_cache.get(key)}


def _visionrt_precisions(precision: str) -> list[str]:
    # For the fp32 file, visionrt's fp32 is strict fp32; bf16 is the explicit opt-in that matches
    # what OpenVINO's defaults silently do on this CPU.
    return ["fp32", "bf16"] if precision == "fp32" else [precision]


def summarize(group: dict[str, Any]) -> dict[str, Any]:
    rows = group["contestants"]
    peers = [r for r in rows if r["name"] in PEERS]
    best_peer = max(peers, key=lambda r: r["throughput_median"])
    ours = [r for r in rows if r["name"].startswith("visionrt")]
    summary = {"best_peer": best_peer["name"], "best_peer_precision": best_peer["precision"]}
    for r in ours:
        tag = f"visionrt_{r['precision']}" + ("_throughput" if "throughput" in r["name"] else "")
        summary[f"{tag}_vs_best_peer_paired"] = round(paired_ratio(r, best_peer), 2)
        summary[f"{tag}_vs_best_peer_best"] = round(
            r["throughput_best"] / best_peer["throughput_best"], 2)
        if group["torch"]:
            summary[f"{tag}_vs_torch"] = round(
                r["throughput_median"] / group["torch"]["throughput_median"], 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--models", default="lite0,resnet50")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="window per round")
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = {"environment": environment(), "method": {
        "rounds": args.rounds, "seconds_per_round": args.seconds, "interleaved": True,
        "input": "random uint8 NHWC batch (the graph input)"}, "groups": []}
    torch_cache: dict = {}
    for model in args.models.split(","):
        bundle = bundle_path(args.work, model)
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            for precision in args.precisions.split(","):
                group = bench_group(bundle, precision, batch_size, torch_cache, args)
                group["summary"] = summarize(group)
                print(f"  -> {group['summary']}", flush=True)
                report["groups"].append(group)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
