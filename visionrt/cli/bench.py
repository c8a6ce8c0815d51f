"""`visionrt bench`: throughput and latency table of a bundle or model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionrt.cli._console import cache_settings, console, parse_csv_list, print_done


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    model: Path | None = typer.Argument(None, help="Bundle directory, .onnx file or engine "
                                        "file (omit with --server)."),
    backends: str = typer.Option("auto", "--backends", "--backend",
                                 help="auto, or a list of onnxruntime,openvino,tensorrt."),
    precisions: str = typer.Option("auto", "--precisions", "--precision",
                                   help="auto (every precision in the bundle) or a list of "
                                        "fp32,fp16,bf16,int8."),
    batch_sizes: str = typer.Option("1,16", "--batch-sizes", help="Batch sizes, e.g. 1,8,32."),
    duration: float = typer.Option(10.0, help="Measured seconds per configuration."),
    warmup: float = typer.Option(2.0, help="Warm-up seconds per configuration (not counted)."),
    concurrency: str = typer.Option("", help="Client threads through the micro-batcher, "
                                             "e.g. 1,4,16 (server scenario)."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images: adds "
                                       "end-to-end rows (decode, resize, infer, top-k)."),
    baseline: str | None = typer.Option(None, "--baseline", help="torch: PyTorch eager on the "
                                        "same model, input and batch (needs the train extra)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    performance: str = typer.Option("latency", help="latency, or throughput (OpenVINO streams "
                                    "with async requests; helps batches > 1)."),
    compile_cache: bool = typer.Option(True, "--compile-cache/--no-compile-cache",
                                       help="Reuse OpenVINO's compiled model from the cache "
                                            "(cold start then measures a cached load)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG plot."),
    server: str | None = typer.Option(None, "--server", help="Load a running Triton server "
                                      "instead (`visionrt serve`): http://HOST:PORT or "
                                      "grpc://HOST:PORT; --concurrency defaults to 1,4,16,64."),
    protocol: str | None = typer.Option(None, "--protocol", help="With --server: http or grpc "
                                        "(default: the URL's)."),
    model_name: str | None = typer.Option(None, "--model-name", help="With --server: the "
                                          "model's name (default: the one visionrt model)."),
) -> None:
    """Measure throughput, latency p50/p90/p99/max, cold start and memory per configuration."""
    if server is not None:
        if model is not None:
            raise typer.BadParameter("give MODEL (a local bundle) or --server URL, not both")
        _bench_server(server, protocol, model_name, concurrency or "1,4,16,64", images,
                      duration, warmup, json_path)
        return
    if model is None:
        raise typer.BadParameter("give MODEL (a bundle directory) or --server URL")
    from visionrt.bench.run import BenchConfig, render_table, run_bench

    config = BenchConfig(
        model=model,
        backends=tuple(parse_csv_list(backends, name="--backends", example="onnxruntime,openvino")),
        precisions=tuple(p.lower() for p in parse_csv_list(precisions, name="--precisions",
                                                           example="fp32,int8")),
        batch_sizes=tuple(parse_csv_list(batch_sizes, name="--batch-sizes", cast=int)),
        duration=duration,
        warmup=warmup,
        concurrency=tuple(parse_csv_list(concurrency, name="--concurrency", cast=int))
        if concurrency.strip() else (),
        images=images,
        baseline=baseline.lower() if baseline else None,
        device=device,
        performance=performance.lower(),
        compile_cache=compile_cache,
        **cache_settings(),
    )
    with console.status("benchmarking...") as status:
        report = run_bench(config, progress=lambda message: status.update(message))
    _show(render_table(report), report, json_path)
    if plot is not None:
        from visionrt.bench.plot import plot_report

        print_done(f"plot written to {plot_report(report, plot, title=model.name)}")


def _bench_server(server: str, protocol: str | None, model_name: str | None, concurrency: str,
                  images: Path | None, duration: float, warmup: float,
                  json_path: Path | None) -> None:
    from visionrt.bench.server import ServerBenchConfig, render_server_table, run_server_bench

    config = ServerBenchConfig(
        server=server, protocol=protocol.lower() if protocol else None, model=model_name,
        concurrency=tuple(parse_csv_list(concurrency, name="--concurrency", cast=int)),
        images=images, duration=duration, warmup=warmup)
    with console.status("benchmarking the server...") as status:
        report = run_server_bench(config, progress=lambda message: status.update(message))
    _show(render_server_table(report), report, json_path)


def _show(table: Any, report: Any, json_path: Path | None) -> None:
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]{note}[/]")
    if json_path is not None:
        print_done(f"results written to {report.write_json(json_path)}")
