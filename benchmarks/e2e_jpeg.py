"""End to end from JPEG files: visionrt predict vs engine-only vs a plain Pillow+torchvision+ORT loop.

Per model, precision and batch size, in interleaved rounds over the same 64 ImageNet-sized JPEGs
(``benchmarks/make_models.py`` writes them):

- ``visionrt engine-only``: ``clf(batch)`` on a preloaded uint8 batch (no decoding);
- ``visionrt end-to-end``: ``clf.predict(files, top_k=5, batch_size=B)``: read, decode (JPEG draft
  mode), resize + centre crop, infer, softmax, top-5;
- ``plain loop`` (Lite0 only; what a user writes without visionrt; also run with
  ``torch.set_num_threads(1)``, which is faster on a busy 2-core machine, and compared to the faster): ``PIL.Image.open(f)
  .convert("RGB")`` -> torchvision ``Resize/CenterCrop/ToTensor/Normalize`` -> ``torch.stack`` ->
  ``onnxruntime.InferenceSession(file)`` (defaults) on the float-NCHW export of the same model ->
  numpy top-5.

    python benchmarks/e2e_jpeg.py [--models lite0,resnet50] [--precisions int8] [--batch-sizes 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from _common import DEFAULT_WORK, bundle_path, loadavg, write_report
from _contest import Contestant, paired_ratio, print_group, run_rounds

from visionrt.bench.environment import environment
from visionrt.bench.inputs import cycle_batches
from visionrt.bundle import load_bundle
from visionrt.images import list_images


def visionrt_pair(bundle: Path, precision: str, files: list[Path],
                  batch_size: int) -> list[Contestant]:
    from visionrt.images import preprocess
    from visionrt.runtime.classifier import Classifier

    clf = Classifier.load(bundle, precision=precision)
    info = dict(clf.info())
    executed = str(info.get("precision"))
    batch = np.stack([preprocess(f, clf.spec) for f in files[:batch_size]])
    batches = cycle_batches(files, batch_size)
    details = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}
    return [
        Contestant("visionrt engine-only", lambda: clf(batch), batch_size, executed, details),
        Contestant("visionrt end-to-end", lambda: clf.predict(next(batches), top_k=5,
                                                              batch_size=batch_size),
                   batch_size, executed, details),
    ]


def plain_loop(host_bundle: Path, precision: str, files: list[Path], batch_size: int,
               torch_threads: int | None = None) -> Contestant:
    import onnxruntime as ort
    import torch
    from PIL import Image
    from torchvision import transforms as T

    manifest = load_bundle(host_bundle)
    spec = manifest.spec
    artifact = next(a for a in manifest.find(precision=precision, format="onnx", target="cpu"))
    session = ort.InferenceSession(str(host_bundle / artifact.file))
    input_name = session.get_inputs()[0].name
    transform = T.Compose([
        T.Resize(spec.resize_size, interpolation=T.InterpolationMode(spec.interpolation)),
        T.CenterCrop(spec.input_size), T.ToTensor(), T.Normalize(spec.mean, spec.std)])
    batches = cycle_batches(files, batch_size)
    threads = torch_threads or torch.get_num_threads()

    def step() -> list[list[int]]:
        torch.set_num_threads(threads)  # process-global: set per call, variants interleave
        tensors = [transform(Image.open(f).convert("RGB")) for f in next(batches)]
        logits = session.run(None, {input_name: torch.stack(tensors).numpy()})[0]
        return np.argsort(-logits, axis=1)[:, :5].tolist()

    label = "plain PIL+torchvision+ORT" + (" (torch 1 thread)" if torch_threads else "")
    return Contestant(label, step, batch_size, precision,
                      {"file": f"{host_bundle.name}/{artifact.file}", "torch_threads": threads})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--models", default="lite0,resnet50")
    parser.add_argument("--precisions", default="int8,fp32")
    parser.add_argument("--batch-sizes", default="16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = list_images(args.work / "images")
    report: dict[str, Any] = {"environment": environment(), "images": {
        "count": len(files), "folder": str(args.work / "images"),
        "note": "ImageNet-sized JPEGs (333..600 px), quality 90"}, "groups": []}
    for model in args.models.split(","):
        bundle = bundle_path(args.work, model)
        for precision in args.precisions.split(","):
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                contestants = visionrt_pair(bundle, precision, files, batch_size)
                if model == "lite0":
                    # The loop as written (torch's default threads) and a stronger variant: with
                    # 2 threads torch's small per-image ops spin-wait on a busy 2-core machine.
                    host = bundle_path(args.work, "lite0-host")
                    contestants += [plain_loop(host, precision, files, batch_size),
                                    plain_loop(host, precision, files, batch_size, 1)]
                run_rounds(contestants, rounds=args.rounds, seconds=args.seconds)
                print_group(f"{model} {precision} batch {batch_size} (load {loadavg()})",
                            contestants)
                rows = {c.name: c.to_dict() for c in contestants}
                e2e, engine = rows["visionrt end-to-end"], rows["visionrt engine-only"]
                # paired: median over rounds of the ratio within one round (see cpu_peers.py)
                summary = {"e2e_vs_engine": round(paired_ratio(e2e, engine), 2)}
                plain = [r for name, r in rows.items() if name.startswith("plain")]
                if plain:  # against the faster (by median) of the two plain variants
                    faster = max(plain, key=lambda r: r["throughput_median"])
                    summary["e2e_vs_plain_loop"] = round(paired_ratio(e2e, faster), 2)
                print(f"  -> {summary}", flush=True)
                report["groups"].append({"model": model, "precision": precision,
                                         "batch_size": batch_size, "summary": summary,
                                         "contestants": list(rows.values())})
    write_report(report, args.json)


if __name__ == "__main__":
    main()
