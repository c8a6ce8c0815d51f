"""int8 before/after on a fine-tuned model whose ImageNet weights no package ships (issue 14).

    python benchmarks/int8_finetuned.py [--arch mobilenetv3_large_100] [--work /tmp/visionrt-int8-ft]
        [--per-class 60] [--img-size 128] [--epochs 30] [--readme]

Trains ``visionrt train --arch ARCH --weights none --freeze none`` from scratch on ``visionrt synth``
images (4 classes, PER_CLASS each, short so that it runs in a few minutes on a laptop CPU), then
exports it twice with ``--precision fp32,int8`` calibrating on the run's own images: the old
int8 recipe (round to nearest, minmax, the stem quantized, no search) and the default. The
run's images carry labels, so the gate is the task metric (accuracy drop of at most 1 point, the
one rule of ``visionrt.gate``). Cells: accuracy of the artifact (fp32 reference in the header),
top-1 agreement with PyTorch, the gate's verdict; speed: OpenVINO int8 (U8S8) against OpenVINO
strict fp32, batch 16, as in int8_recipes.py. Results: WORK/results.json; ``--readme`` rewrites the
table in benchmarks/README.md between its int8-finetuned markers; ``--render`` only renders an
earlier WORK/results.json. The stem of mobilenetv3 ends in hard-swish, not a ReLU/ReLU6 chain, so
``--int8-stem float`` leaves it int8 there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RECIPES = {
    "before": ("round to nearest, minmax, stem int8 (the old default)",
               dict(int8_rounding="none", calib_method="minmax", int8_target=None,
                    int8_stem="int8")),
    "after": ("bias correction + percentile + mixed-precision search (the default; the stem "
              "ends in hard-swish, so it stays int8)", {}),
}
ARTIFACTS = ("model.int8.onnx:onnxruntime", "model.int8.onnx:openvino",
             "model.int8.trt.onnx:onnxruntime")
MARKERS = ("<!-- int8-finetuned:start -->", "<!-- int8-finetuned:end -->")


def train(args: argparse.Namespace) -> Path:
    """Synthetic images and a from-scratch run; both are reused when WORK already holds them."""
    data, run = args.work / "data", args.work / "run"
    cli = [sys.executable, "-m", "visionrt"]
    if not data.is_dir():
        subprocess.run([*cli, "synth", str(data), "--classes", "4", "--per-class",
                        str(args.per_class), "--size", str(args.img_size)], check=True)
    if not (run / "model.safetensors").is_file():
        subprocess.run([*cli, "train", str(data), "--out", str(run), "--arch", args.arch,
                        "--weights", "none", "--freeze", "none", "--img-size", str(args.img_size),
                        "--epochs", str(args.epochs), "--lr", "0.001", "--batch-size", "32",
                        "--overwrite"], check=True)
    return run


def export_recipe(run: Path, name: str, work: Path, calib_samples: int) -> dict:
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export

    config = ExportConfig(out=work / name, source=str(run), precisions="fp32,int8",
                          calib_samples=calib_samples, verify_samples=100, allow_mismatch=True,
                          overwrite=True, **RECIPES[name][1])
    result = export(config)
    rows = {}
    for report in result.reports:
        metric = report.metric or {}
        rows[f"{report.artifact}:{report.backend}"] = {
            "samples": report.samples, "top1": report.top1_agreement, "passed": report.passed,
            "metric": metric.get("name"), "reference": metric.get("reference"),
            "value": metric.get("artifact")}
    return {"recipe": name, "label": RECIPES[name][0], "verify": rows}


def table(data: dict) -> str:
    results, speeds = data["results"], data["speed"]
    fp32 = results[0]["verify"]["model.fp32.onnx:onnxruntime"]
    lines = [f"| recipe | {' | '.join(ARTIFACTS)} | gate | OpenVINO U8S8 / strict fp32, b16 |",
             "|---|" + "---|" * (len(ARTIFACTS) + 2)]
    for r in results:
        cells = []
        for key in ARTIFACTS:
            row = r["verify"].get(key)
            cells.append("-" if row is None else
                         f"acc {row['value']:.3f} / top-1 {row['top1']:.3f}"
                         f"{'' if row['passed'] else ' (fail)'}")
        gate = all(row["passed"] for row in r["verify"].values())
        lines.append(f"| {RECIPES.get(r['recipe'], (r['label'],))[0]} | {' | '.join(cells)} | {'pass' if gate else 'fail'} | "
                     f"{speeds.get(r['recipe'], {}).get('vs_fp32', '-')}x |")
    lines += ["", f"{data['arch']} trained from scratch for {data['epochs']} epochs on "
              f"`visionrt synth` images ({data['per_class']} per class, {data['img_size']} px); "
              f"fp32 {fp32['metric']} {fp32['reference']:.3f} on the export's {fp32['samples']} "
              f"held-out images. Cells: the artifact's {fp32['metric']} / top-1 agreement with "
              f"PyTorch. Load average during the speed rounds: "
              f"{', '.join(f'{x:.1f}' for x in data['loadavg'])} ({data.get('cores', '?')} cores)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv3_large_100")
    parser.add_argument("--work", type=Path, default=Path("/tmp/visionrt-int8-ft"))
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--readme", action="store_true",
                        help="rewrite the table in benchmarks/README.md")
    parser.add_argument("--render", action="store_true",
                        help="only render WORK/results.json of an earlier run (no measuring)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.render:
        (args.work / "results.json").write_text(json.dumps(measure(args), indent=2))
    text = table(json.loads((args.work / "results.json").read_text()))
    print(text)
    if args.readme:
        from _common import replace_section

        replace_section(Path(__file__).resolve().parent / "README.md", *MARKERS, text)
    return 0


def measure(args: argparse.Namespace) -> dict:
    from int8_recipes import speed

    run = train(args)
    results = [export_recipe(run, name, args.work, args.calib_samples) for name in RECIPES]
    speeds = speed({name: args.work / name for name in RECIPES}, args.rounds, 1.0,
                   size=args.img_size)
    return {"arch": args.arch, "epochs": args.epochs, "per_class": args.per_class,
            "img_size": args.img_size, "results": results, "speed": speeds,
            "loadavg": os.getloadavg(), "cores": os.cpu_count()}


if __name__ == "__main__":
    raise SystemExit(main())
