"""int8 recipes side by side: agreement with PyTorch and speed, one row per technique (issue 14).

    python benchmarks/int8_recipes.py [--arch tf_efficientnet_lite0] [--recipes base,bc,...]
        [--work /tmp/visionrt-int8-recipes] [--rounds 6] [--seconds 1.0] [--readme]

Images: natural-image crops of scikit-image's photos (random crop 25-100 % of the area, aspect
3/4-4/3, horizontal flip, short side 256), written deterministically into WORK: ``export/`` (200
crops; the export keeps 100 for its own verification and calibrates on 64 of the rest) and
``heldback/`` (276 crops of other seeds, never seen by any export). Each recipe is one
``visionrt export imagenet:ARCH --precision fp32,int8 --calib WORK/export --calib-samples 64``
with its flags, through the library. Agreement is with the PyTorch model: top-1 on all samples /
on the confident ones (PyTorch p >= 0.3) / top-5 containment; "gate" is the export's own verdict
(the one rule, ``visionrt.gate``). Speed: the U8S8 graph against the fp32 graph in OpenVINO
with strict f32 (INFERENCE_PRECISION_HINT f32), batch 16, latency mode, in alternating rounds;
the ratio is the median of the per-round ratios. Results: WORK/results.json; ``--readme``
rewrites the table in benchmarks/README.md between its int8-recipes markers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass",
          "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
          "rocket", "text")
# name: (label, export flags)
RECIPES = {
    "base": ("round to nearest, minmax (before: the old default)",
             dict(int8_rounding="none", calib_method="minmax", int8_target=None, int8_stem="int8")),
    "percentile": ("percentile calibration",
                   dict(int8_rounding="none", calib_method="percentile", int8_target=None,
                        int8_stem="int8")),
    "bc": ("bias correction, minmax",
           dict(int8_rounding="nearest", calib_method="minmax", int8_target=None,
                int8_stem="int8")),
    "bc_pct": ("bias correction + percentile",
               dict(int8_rounding="nearest", calib_method="percentile", int8_target=None,
                    int8_stem="int8")),
    "search": ("bias correction + percentile + mixed-precision search, stem int8",
               dict(int8_rounding="nearest", calib_method="percentile", int8_target=0.97,
                    int8_stem="int8")),
    "default": ("bias correction + percentile + float stem + mixed-precision search (after: the "
                "default)",
                dict(int8_rounding="nearest", calib_method="percentile", int8_target=0.97,
                     int8_stem="float")),
    "adaround": ("AdaRound + bias correction + percentile",
                 dict(int8_rounding="adaround", calib_method="percentile", int8_target=None,
                      int8_stem="int8")),
}
DEFAULT_RECIPES = "base,percentile,bc,bc_pct,search,default"
MARKERS = ("<!-- int8-recipes:start -->", "<!-- int8-recipes:end -->")


def write_crops(folder: Path, count: int, seed: int) -> Path:
    """``count`` JPEG crops of the scikit-image photos, round-robin over the photos; idempotent."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) == count:
        return folder
    rng = np.random.default_rng(seed)
    photos = []
    for name in PHOTOS:
        array = getattr(data, name)()
        photos.append(Image.fromarray((np.stack([array] * 3, -1) if array.ndim == 2
                                       else array[..., :3]).astype(np.uint8)))
    for index in range(count):
        photo = photos[index % len(photos)]
        w, h = photo.size
        area = rng.uniform(0.25, 1.0) * w * h
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(min(w, round(np.sqrt(area * ratio)))), int(min(h, round(np.sqrt(area / ratio))))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 256 / min(crop.size)
        crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
                           Image.Resampling.BICUBIC)
        crop.save(folder / f"{PHOTOS[index % len(PHOTOS)]}_{index:04d}.jpg", quality=92)
    return folder


def export_recipe(arch: str, name: str, work: Path) -> dict:
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export

    flags = RECIPES[name][1]
    config = ExportConfig(out=work / name, source=f"imagenet:{arch}", precisions="fp32,int8",
                          calib=work / "export", calib_samples=64, allow_mismatch=True,
                          overwrite=True, **flags)
    start = time.perf_counter()
    result = export(config)
    rows = {f"{r.artifact}:{r.backend}": _agreement(r) for r in result.reports
            if "int8" in r.artifact}
    return {"recipe": name, "label": RECIPES[name][0], "flags": flags,
            "export_s": round(time.perf_counter() - start, 1), "verify": rows,
            **float_chains(work / name)}


def float_chains(bundle: Path) -> dict:
    """The chains each int8 graph kept in float, and the search's measured speed cost."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    found = {}
    for artifact in manifest["artifacts"]:
        mixed = (artifact.get("quantization") or {}).get("mixed_precision") or {}
        key = {"model.int8.onnx": "u8s8", "model.int8.trt.onnx": "s8s8"}.get(artifact["file"])
        if key:
            found[f"float_chains_{key}"] = len(mixed.get("float_chains", []))
            found[f"mixed_speed_{key}"] = mixed.get("speed")
    return found


def _agreement(report) -> dict:
    return {"samples": report.samples, "top1": report.top1_agreement,
            "confident": report.confident_top1_agreement,
            "confident_samples": report.confident_samples, "top5": report.top5_containment,
            "passed": report.passed}


def heldback_agreement(arch: str, bundle: Path, work: Path, cache: dict) -> dict:
    """U8S8 on ONNX Runtime against PyTorch on the held-back crops."""
    from visionrt.exporter import calibration, verify
    from visionrt.exporter.onnx import graph_spec
    from visionrt.images import to_model_input
    from visionrt.trainer import models

    if "reference" not in cache:
        model, spec = models.imagenet_model(arch)
        spec = graph_spec(spec, "graph")
        items = list(calibration.images_from_path(work / "heldback", spec.labels).items)
        pixels = calibration.load_images(items, spec).pixels
        cache.update(reference=verify.reference_logits(model, pixels, spec),
                     inputs=to_model_input(pixels, spec), spec=spec)
    logits, _ = verify.run_backend("onnxruntime", bundle / "model.int8.onnx", cache["inputs"], 16,
                                   "int8")
    return _agreement(verify.compare("model.int8.onnx", "int8", "onnxruntime", cache["reference"],
                                     logits, cache["spec"]))


def speed(bundles: dict[str, Path], rounds: int, seconds: float, batch: int = 16,
          size: int = 224) -> dict:
    """img/s of each recipe's U8S8 graph and of the fp32 graph (OpenVINO strict f32), interleaved;
    returns each recipe's median paired ratio to fp32."""
    from visionrt.runtime.base import BackendConfig, load_backend

    first = next(iter(bundles.values()))
    runners = {"fp32": (first / "model.fp32.onnx", "fp32")}
    runners.update({name: (path / "model.int8.onnx", "int8") for name, path in bundles.items()})
    x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    loaded = {name: load_backend("openvino", path, None, BackendConfig(
        precision=precision, max_batch=batch, compile_cache=False))
        for name, (path, precision) in runners.items()}
    rates: dict[str, list[float]] = {name: [] for name in loaded}
    for index in range(rounds):
        order = list(loaded) if index % 2 == 0 else list(loaded)[::-1]
        for name in order:
            backend = loaded[name]
            backend.infer(x)
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                backend.infer(x)
                done += batch
            rates[name].append(done / (time.perf_counter() - start))
    for backend in loaded.values():
        backend.close()
    return {name: {"images_per_s": round(statistics.median(r), 1),
                   "vs_fp32": round(statistics.median(
                       a / b for a, b in zip(r, rates["fp32"], strict=True)), 2)}
            for name, r in rates.items()}


def table(results: list[dict], speeds: dict, load: tuple[float, ...], work: Path,
          cores: int | str = "?") -> str:
    def cell(row: dict | None) -> str:
        if not row:
            return "-"
        confident = "-" if row["confident"] is None else f"{row['confident']:.3f}"
        return f"{row['top1']:.3f} / {confident} / {row['top5']:.3f}"

    lines = ["| recipe | U8S8 ORT | U8S8 OpenVINO | S8S8 ORT | held-back U8S8 ORT | gate | "
             "float chains U8S8 / S8S8 | OpenVINO U8S8 / strict fp32, b16 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        v = r["verify"]
        gate = all(row["passed"] for row in v.values())
        chains = r if "float_chains_s8s8" in r else float_chains(work / r["recipe"])
        lines.append(
            f"| {r['label']} | {cell(v.get('model.int8.onnx:onnxruntime'))} | "
            f"{cell(v.get('model.int8.onnx:openvino'))} | "
            f"{cell(v.get('model.int8.trt.onnx:onnxruntime'))} | {cell(r.get('heldback'))} | "
            f"{'pass' if gate else 'fail'} | {chains['float_chains_u8s8']} / "
            f"{chains['float_chains_s8s8']} | "
            f"{speeds.get(r['recipe'], {}).get('vs_fp32', '-')}x |")
    n = results[0]["verify"]["model.int8.onnx:onnxruntime"]
    lines.append("")
    lines.append(f"Cells: top-1 agreement on all / on confident samples / top-5 containment. "
                 f"Verification: the export's own {n['samples']} held-out crops "
                 f"({n['confident_samples']} confident); held-back: 276 crops no export saw. "
                 f"Load average during the speed rounds: {', '.join(f'{x:.1f}' for x in load)} "
                 f"({cores} cores).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--recipes", default=DEFAULT_RECIPES)
    parser.add_argument("--work", type=Path, default=Path("/tmp/visionrt-int8-recipes"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--readme", action="store_true",
                        help="rewrite the table in benchmarks/README.md")
    parser.add_argument("--render", action="store_true",
                        help="only render WORK/results.json of an earlier run (no measuring)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results_file = args.work / "results.json"
    if not args.render:
        results_file.write_text(json.dumps(measure(args), indent=2))
    data = json.loads(results_file.read_text())
    text = table(data["results"], data["speed"], tuple(data["loadavg"]), args.work,
                 data.get("cores", "?"))
    print(text)
    if args.readme:
        from _common import replace_section

        replace_section(Path(__file__).resolve().parent / "README.md", *MARKERS,
                        f"{data['arch']}:\n\n{text}")
    return 0


def measure(args: argparse.Namespace) -> dict:
    write_crops(args.work / "export", 200, seed=0)
    write_crops(args.work / "heldback", 276, seed=1)
    results, cache = [], {}
    for name in args.recipes.split(","):
        row = export_recipe(args.arch, name, args.work)
        row["heldback"] = heldback_agreement(args.arch, args.work / name, args.work, cache)
        print(json.dumps(row), flush=True)
        results.append(row)
    speeds = speed({r["recipe"]: args.work / r["recipe"] for r in results}, args.rounds,
                   args.seconds)
    return {"arch": args.arch, "results": results, "speed": speeds, "loadavg": os.getloadavg(),
            "cores": os.cpu_count()}


if __name__ == "__main__":
    raise SystemExit(main())
