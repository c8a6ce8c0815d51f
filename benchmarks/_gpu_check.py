"""The Python half of benchmarks/gpu_check.sh: preflight, GPU training, probe bundle, summary.

    python benchmarks/_gpu_check.py preflight MODE          missing requirements, one per line
    python benchmarks/_gpu_check.py train-on-gpu DATA RUN   a short training run; fails unless
                                                            it ran on the GPU
    python benchmarks/_gpu_check.py probe-bundle OUT        a bundle of the probe network + engine
    python benchmarks/_gpu_check.py summary MODE OUT        one table; exit 1 on any failure
    python benchmarks/_gpu_check.py record MODE OUT         record a passed run (gpu_status.py)

MODE is full (a GPU host with TensorRT), rehearse (this script's steps on the CPU against the
TensorRT/CUDA double in tests/gpu_double) or no-tensorrt (a GPU host without TensorRT: the real
CUDA stack with the double TensorRT). A step passes, fails, or is skipped because its requirement
is "not on this machine"; a test skipped for any other reason counts as a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE_ONLY = "not on this machine"


def preflight(mode: str) -> list[str]:
    from visionrt import _optional
    from visionrt.runtime import _cuda

    missing = []
    if mode in ("full", "rehearse"):
        reason = _cuda.tensorrt_unavailable_reason(0)
        if reason:
            missing.append(reason)
    else:
        reason = _cuda.unavailable_reason(0)
        if reason:
            missing.append(f"CUDA: {reason}")
        for module in ("cupy", "torch"):
            if not _optional.available(module):
                missing.append(f"python package {module} is missing (the check enqueues a cupy "
                               "kernel and trains with torch)")
    if mode == "rehearse" and not missing and "gpu_double" not in str(
            getattr(_cuda.require_tensorrt(0), "__file__", "")):
        missing.append("--rehearse must run against the double (tests/gpu_double), not a real "
                       "TensorRT")
    return missing


def train_on_gpu(data: str, run: str) -> int:
    """`visionrt train` in this process, then the GPU memory it used (0: it ran on the CPU)."""
    import torch

    from visionrt.cli import main

    sys.argv = ["visionrt", "train", data, "--out", run, "--arch", "mobilenetv3_small_050",
                "--weights", "none", "--freeze", "none", "--img-size", "64", "--batch-size", "16",
                "--epochs", "2", "--amp"]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            return int(exc.code)
    used = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    print(f"GPU memory used by training: {used / 2**20:.1f} MiB on "
          f"{torch.cuda.get_device_name(0) if used else 'no GPU'}")
    return 0 if used > 0 else 1


def probe_bundle(out: str) -> int:
    from gpu_double.bundles import probe_bundle as build

    print(f"probe bundle written to {build(Path(out), size=64, classes=8, max_batch=32)}")
    return 0


def _test_rows(out: Path) -> tuple[list[tuple[str, str, str]], bool]:
    rows, ok = [], True
    for xml in sorted(out.glob("*tests.xml")):
        for case in ET.parse(xml).iter("testcase"):
            status = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    message = node.get("message") or ""
                    status = f"{tag}: {message[:90]}" if tag != "skipped" else f"skipped: {message}"
                    here = tag == "skipped" and HERE_ONLY in message
                    ok = ok and here
            rows.append(("test", case.get("name", "?"), status))
    return rows, ok


def _bench_rows(out: Path, mode: str) -> tuple[list[tuple[str, str, str]], bool]:
    rows, results = [], []
    for path in sorted(out.glob("bench*.json")):
        results += json.loads(path.read_text()).get("results", [])
    for r in results:
        lat = r.get("latency_ms", {})
        rows.append(("bench", f"{r['backend']} {r['precision']} {r['device']} "
                     f"b{r['batch_size']} c{r.get('concurrency', 1)} {r['mode']}",
                     f"{r['throughput']:.0f} img/s, p50 {lat.get('p50', 0):.2f} ms"))
    ok = any(r["backend"] == "tensorrt" for r in results)
    if mode == "no-tensorrt":  # the torch CUDA baseline is one of this mode's checks
        torch_rows = any(r["backend"] == "torch" and r["device"] == "cuda" for r in results)
        if not torch_rows:
            rows.append(("bench", "torch cuda baseline", "FAILED: no rows (see bench.log)"))
        ok = ok and torch_rows
    return rows, ok


def _parity_rows(out: Path) -> tuple[list[tuple[str, str, str]], bool]:
    """Engines vs their ONNX source: an engine that fails where ONNX Runtime passed on the same
    graph is a GPU-path failure; both failing is the model's (e.g. int8 calibration)."""
    manifest = out / "bundle" / "manifest.json"
    if not manifest.is_file():
        return [], True
    artifacts = json.loads(manifest.read_text())["artifacts"]
    by_file = {a["file"]: a for a in artifacts}
    rows, ok = [], True
    for engine in (a for a in artifacts if a["format"] == "tensorrt" and a.get("parity")):
        parity, source = engine["parity"], by_file[engine["tensorrt"]["built_from"]]["parity"]
        broken = not parity["passed"] and source["passed"]
        ok = ok and not broken
        rows.append(("parity", engine["file"], f"top-1 {parity['top1_agreement']:.3f} "
                     f"(ONNX Runtime on {engine['tensorrt']['built_from']}: "
                     f"{source['top1_agreement']:.3f}){' FAILED' if broken else ''}"))
    return rows, ok


def summary(mode: str, out: Path) -> int:
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
    rows = [("step", name, status) for name, status in steps]
    steps_ok = all(s in ("ok",) or s.startswith(HERE_ONLY) for _, s in steps)
    tests, tests_ok = _test_rows(out)
    parity, parity_ok = _parity_rows(out)
    bench, bench_ok = _bench_rows(out, mode)
    rows += tests + parity + bench
    width = max(len(r[1]) for r in rows)
    device = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else "?"
    print(f"\nGPU check ({mode}) on {device}")
    print(f"{'kind':<6} {'what':<{width}}  result")
    for kind, what, result in rows:
        print(f"{kind:<6} {what:<{width}}  {result}")
    verdicts = {"steps": steps_ok, "tests": tests_ok, "engine parity": parity_ok,
                "benchmark rows": bench_ok}
    ok = all(verdicts.values())
    print(f"\noverall: {'OK' if ok else 'FAILED'} (" + ", ".join(
        f"{name} {'ok' if good else 'FAILED'}" for name, good in verdicts.items())
        + f"); logs and JSON in {out}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("preflight", "train-on-gpu", "probe-bundle",
                                            "summary", "record"))
    parser.add_argument("args", nargs="*")
    options = parser.parse_args()
    if options.command == "preflight":
        print("\n".join(preflight(options.args[0])))
        return 0
    if options.command == "train-on-gpu":
        return train_on_gpu(*options.args)
    if options.command == "probe-bundle":
        return probe_bundle(options.args[0])
    if options.command == "summary":
        return summary(options.args[0], Path(options.args[1]))
    from gpu_status import record

    return record(options.args[0], Path(options.args[1]))


if __name__ == "__main__":
    sys.exit(main())
