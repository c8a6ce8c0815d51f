"""Served vs in-process: Lite0 int8 behind a real Triton server (`visionrt serve`) against
``Classifier.predict`` in one process, on the same JPEG files, with the same threads.

    python benchmarks/serve_speed.py [--work /tmp/visionrt-bench] [--rounds 4] [--seconds 5] \
        [--json serve.json] [--write benchmarks/README.md]

1. ``WORK/images``: 64 ImageNet-sized JPEGs cropped from scikit-image's photos.
2. ``WORK/lite0-imagenet``: ``visionrt export imagenet:tf_efficientnet_lite0 --precision
   fp32,int8 --calib WORK/images --allow-mismatch`` (ImageNet weights from the weights package).
3. One server (``visionrt serve`` defaults: backend auto, 1 instance, queue delay 0) with
   ``--precision int8``, and in this process ``Classifier.load(bundle, precision="int8")``: the
   same backend, backend threads (the physical cores) and decode threads.
4. Interleaved rounds (order reversed every other round), each contestant a fixed window after
   a warm-up: in-process throughput (``clf.predict`` of 32 files per call, the default batch),
   served at 16 clients (one file per request, HTTP and gRPC), in-process latency
   (``clf.predict([file])`` one at a time) and served at 1 client.

Goals (issue 15): served images/s at 16 clients >= 0.8x in-process, and p99 at 1 client <= the
in-process p99 + 5 ms; ratios and differences are paired within a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import DEFAULT_WORK, make_jpeg_folder, write_report

from visionrt.bench.environment import environment
from visionrt.bench.inputs import cycle_batches
from visionrt.bench.timing import Measurement, measure_steps

START, END = "<!-- serve:start -->", "<!-- serve:end -->"
EXPORT = ["export", "imagenet:tf_efficientnet_lite0", "--precision", "fp32,int8",
          "--allow-mismatch"]


def make_bundle(work: Path) -> Path:
    """The Lite0 ImageNet bundle, exported by the CLI the way the issue states (idempotent)."""
    images = make_jpeg_folder(work / "images")
    bundle = work / "lite0-imagenet"
    if not (bundle / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "visionrt", *EXPORT, "--calib", str(images),
                        "--out", str(bundle), "--overwrite"], check=True)
    return bundle


def contestants(clf: Any, files: list[Path], url: dict[str, str]) -> dict[str, Any]:
    """name -> a function(seconds, warmup) -> Measurement."""
    from visionrt.bench.server import ServerBenchConfig, run_server_bench

    batches = cycle_batches(files, 32)
    singles = cycle_batches(files, 1)

    def local(step: Any, per_step: int) -> Any:
        return lambda seconds, warmup: measure_steps(step, images_per_step=per_step,
                                                     duration_s=seconds, warmup_s=warmup)

    def served(protocol: str, clients: int) -> Any:
        def run(seconds: float, warmup: float) -> Measurement:
            config = ServerBenchConfig(url[protocol], concurrency=(clients,), duration=seconds,
                                       warmup=warmup, images=files[0].parent)
            row = run_server_bench(config).results[0]
            return Measurement(row.images_per_s, row.latency, row.requests, row.wall_s,
                               row.errors)
        return run

    return {
        "in-process predict (batch 32)": local(lambda: clf.predict(next(batches)), 32),
        "served, 16 clients, HTTP": served("http", 16),
        "served, 16 clients, gRPC": served("grpc", 16),
        "in-process predict (1 file per call)": local(lambda: clf.predict(next(singles)), 1),
        "served, 1 client, HTTP": served("http", 1),
        "served, 1 client, gRPC": served("grpc", 1),
    }


def run_rounds(named: dict[str, Any], rounds: int, seconds: float,
               warmup: float) -> dict[str, list[Measurement]]:
    results: dict[str, list[Measurement]] = {name: [] for name in named}
    order = list(named)
    for name in order:  # first-use costs (OpenVINO compiles a model per batch size) out of rounds
        named[name](max(seconds, 3.0), warmup)
    for index in range(rounds):
        for name in order if index % 2 == 0 else order[::-1]:
            measured = named[name](seconds, warmup)
            results[name].append(measured)
            print(f"  round {index + 1} {name:38s} {measured.throughput:7.1f} img/s  "
                  f"p50 {measured.latency.p50:7.2f}  p99 {measured.latency.p99:7.2f} ms  "
                  f"errors {measured.errors}", flush=True)
    return results


def summary(results: dict[str, list[Measurement]]) -> dict[str, Any]:
    rows = {name: {"throughput_rounds": [round(m.throughput, 1) for m in rounds],
                   "throughput_median": round(statistics.median(m.throughput for m in rounds), 1),
                   "throughput_best": round(max(m.throughput for m in rounds), 1),
                   "p50_ms_median": round(statistics.median(m.latency.p50 for m in rounds), 2),
                   "p99_ms_rounds": [round(m.latency.p99, 2) for m in rounds],
                   "p99_ms_median": round(statistics.median(m.latency.p99 for m in rounds), 2),
                   "errors": sum(m.errors for m in rounds)}
            for name, rounds in results.items()}
    local_tp, local_lat = "in-process predict (batch 32)", "in-process predict (1 file per call)"
    goals = {}
    for protocol in ("HTTP", "gRPC"):
        tp = results[f"served, 16 clients, {protocol}"]
        lat = results[f"served, 1 client, {protocol}"]
        goals[protocol] = {
            "throughput_ratio": _paired_ratio(tp, results[local_tp]),
            "throughput_ratio_vs_single_files": _paired_ratio(tp, results[local_lat]),
            "p99_difference_ms": round(statistics.median(
                s.latency.p99 - b.latency.p99 for s, b in zip(lat, results[local_lat],
                                                              strict=True)), 2)}
    return {"rows": rows, "goals": goals}


def _paired_ratio(served: list[Measurement], local: list[Measurement]) -> float:
    return round(statistics.median(s.throughput / b.throughput
                                   for s, b in zip(served, local, strict=True)), 2)


def render(report: dict[str, Any]) -> str:
    env, config = report["environment"], report["config"]
    lines = [START, "### Served on Triton vs in-process (Lite0 int8, JPEG files)", "",
             f"Machine: {env['cpu']}, {env['cores']} cores, shared with other jobs (load "
             f"average {env['loadavg_start']} at start, {env['loadavg_end']} at end); "
             f"Triton {config['triton']} from nvidia-pytriton {config['pytriton']}, the model "
             f"runs {config['runs']}.", "",
             f"{config['images']}; {config['rounds']} interleaved rounds of {config['seconds']:g}"
             f" s after {config['warmup']:g} s of warm-up; median over rounds (best in "
             "brackets). Served clients run in this process (tritonclient asyncio, one file "
             f"per request) and share the {env['cores']} cores with the server.", "",
             "| contestant | img/s | p50 ms | p99 ms (per round) |", "|---|---|---|---|"]
    for name, row in report["summary"]["rows"].items():
        lines.append(f"| {name} | {row['throughput_median']} ({row['throughput_best']}) | "
                     f"{row['p50_ms_median']} | {row['p99_ms_median']} "
                     f"({', '.join(map(str, row['p99_ms_rounds']))}) |")
    lines += ["", "| goal | HTTP | gRPC |", "|---|---|---|"]
    goals = report["summary"]["goals"]
    lines.append("| served img/s at 16 clients / in-process (>= 0.8x), paired | "
                 f"{goals['HTTP']['throughput_ratio']}x | {goals['gRPC']['throughput_ratio']}x |")
    lines.append("| (not a goal) served img/s at 16 clients / in-process 1 file per call | "
                 f"{goals['HTTP']['throughput_ratio_vs_single_files']}x | "
                 f"{goals['gRPC']['throughput_ratio_vs_single_files']}x |")
    lines.append("| served p99 at 1 client - in-process p99 (<= +5 ms), paired | "
                 f"{goals['HTTP']['p99_difference_ms']:+} ms | "
                 f"{goals['gRPC']['p99_difference_ms']:+} ms |")
    return "\n".join([*lines, "", END])


def write_section(readme: Path, section: str) -> None:
    text = readme.read_text(encoding="utf-8")
    if START in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", type=Path, help="README whose serve section to rewrite")
    args = parser.parse_args()

    from visionrt.exporter.triton_python import PythonModelOptions
    from visionrt.images import list_images
    from visionrt.runtime.classifier import Classifier
    from visionrt.serve.server import ServerPorts
    from visionrt.serve.service import ServeConfig, Service

    bundle = make_bundle(args.work)
    files = list_images(args.work / "images")
    config = ServeConfig(bundle, ports=ServerPorts(*_free_ports()), host="127.0.0.1",
                         model=PythonModelOptions(precision="int8", max_queue_delay_us=0),
                         workdir=Path(tempfile.mkdtemp(prefix="visionrt-serve-bench-")))
    report: dict[str, Any] = {"environment": environment()}
    with Service(config) as service, Classifier.load(bundle, precision="int8") as clf:
        info = service.model_info() or {}
        report["config"] = {
            "bundle": str(bundle), "images": f"{len(files)} JPEGs from scikit-image's photos",
            "rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
            "triton": service.triton_version(), "pytriton": service.server.install.version,
            "runs": f"{info.get('backend')} {info.get('precision')} on {info.get('device')}",
            "in_process": {k: v for k, v in clf.info().items() if isinstance(v, (str, int))}}
        url = {"http": service.server.http_url, "grpc": service.server.grpc_url}
        results = run_rounds(contestants(clf, files, url), args.rounds, args.seconds,
                             args.warmup)
    report["summary"] = summary(results)
    write_report(report, args.json)
    print(json.dumps(report["summary"]["goals"], indent=2))
    if args.write:
        write_section(args.write, render(report))
        print(f"wrote the serve section of {args.write}")


def _free_ports() -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(3)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


if __name__ == "__main__":
    main()
