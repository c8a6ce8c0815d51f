"""`visionrt bench`: throughput and latency table of a bundle or model file."""

from __future__ import annotations

from pathlib import Path

import typer

from visionrt.cli._console import cache_settings, console, parse_csv_list, print_done


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    model: Path = typer.Argument(..., help="Bundle directory, .onnx file or engine file."),
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
) -> None:
    """Measure throughput, latency p50/p90/p99/max, cold start and memory per configuration."""
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
    console.print(render_table(report))
    for note in report.notes:
        console.print(f"[dim]{note}[/]")
    if json_path is not None:
        print_done(f"results written to {report.write_json(json_path)}")
    if plot is not None:
        from visionrt.bench.plot import plot_report

        print_done(f"plot written to {plot_report(report, plot, title=model.name)}")

