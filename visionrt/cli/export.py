"""`visionrt export`: a run or a pretrained backbone -> a verified bundle (thin shell)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from visionrt.cli._console import console, print_done, print_warning, status


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    source: str = typer.Argument(..., help="A run directory (from `visionrt train --out RUN`) "
                                 "or imagenet:ARCH for a pretrained ImageNet backbone."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to create."),
    weights: Path | None = typer.Option(None, "--weights", help="With imagenet:ARCH: a weights "
                                        "file (.safetensors, or a .pth state_dict) instead of the "
                                        "ImageNet weights found offline."),
    precision: str = typer.Option("fp32,fp16,int8", "--precision",
                                  help="Comma-separated fp32,fp16,int8 (fp32 is always written: "
                                  "the others derive from it). int8 writes model.int8.onnx "
                                  "(U8S8, CPU) and model.int8.trt.onnx (S8S8, TensorRT)."),
    calib: Path | None = typer.Option(None, "--calib", help="Images for int8 calibration and "
                                      "the held-out parity check: an image folder or a CSV "
                                      "(default: the run's training images)."),
    calib_samples: int = typer.Option(128, "--calib-samples", help="Calibration images."),
    calib_method: str = typer.Option("percentile", "--calib-method",
                                     help="percentile (99.999th, ignores rare outliers) | minmax "
                                     "| entropy: how int8 activation ranges are calibrated."),
    int8_rounding: str = typer.Option("nearest", "--int8-rounding",
                                      help="Weight rounding before int8 quantization: nearest "
                                      "(then each layer's bias is corrected for its rounding "
                                      "error) | adaround (rounding learned per layer on the "
                                      "calibration images, then bias correction; slower) | none "
                                      "(ONNX Runtime's own)."),
    int8_target: float | None = typer.Option(
        None, "--int8-target", help="Agreement with fp32 each int8 graph must reach on the "
        "calibration images under the gate's rule (top-1 on the samples fp32 is sure about, "
        "top-5 on all); the layer chains that hurt it most stay in float until it does "
        "(default: the int8 gate's 0.97; 1.0 keeps searching up to --int8-max-float chains)."),
    int8_max_float: int = typer.Option(4, "--int8-max-float",
                                       help="At most this many layer chains stay in float "
                                       "(0: all int8, no search)."),
    int8_stem: str = typer.Option("float", "--int8-stem",
                                  help="float: the stem (first conv on the image and the "
                                  "depthwise conv after it) stays float in int8 graphs, like the "
                                  "head | int8: quantize it too (faster, less accurate)."),
    verify_samples: int = typer.Option(100, "--verify-samples",
                                       help="Held-out images each artifact is checked on."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch (dynamic batch axis "
                                  "1..N; TensorRT profile max)."),
    preprocess: str = typer.Option("graph", "--preprocess", help="graph: uint8 NHWC input, "
                                   "normalisation inside the model | host: float NCHW input."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset, 18 or newer (default: the "
                                     "exporter's own)."),
    engine: bool = typer.Option(False, "--engine", help="Also build TensorRT engines (needs an "
                                "NVIDIA GPU and: pip install 'visionrt[tensorrt]')."),
    timing_cache: Path | None = typer.Option(None, "--timing-cache",
                                             help="TensorRT timing cache file to reuse/update."),
    triton: Path | None = typer.Option(None, "--triton", help="Also write a Triton model "
                                       "repository here."),
    triton_backend: str = typer.Option("auto", "--triton-backend", help="Triton model kind: "
                                       "visionrt (python backend running visionrt, images "
                                       "decoded on the server; `visionrt serve`), onnxruntime "
                                       "or tensorrt (NGC Triton container). auto: tensorrt "
                                       "with --engine, else visionrt."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="Write the bundle even "
                                        "when an artifact fails its parity check."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Export ONNX fp32/fp16/int8 (and TensorRT engines), each verified against PyTorch."""
    from visionrt.exporter.config import DEFAULT_INT8_TARGET, ExportConfig
    from visionrt.exporter.pipeline import export as run_export

    config = ExportConfig(
        out=out, source=source, weights=weights, precisions=precision, calib=calib,
        calib_samples=calib_samples, calib_method=calib_method, int8_rounding=int8_rounding,
        int8_target=DEFAULT_INT8_TARGET if int8_target is None else int8_target,
        int8_max_float=int8_max_float, int8_stem=int8_stem, verify_samples=verify_samples,
        max_batch=max_batch,
        preprocess=preprocess, opset=opset, engine=engine, timing_cache=timing_cache,
        triton=triton, triton_backend=triton_backend.lower(),
        allow_mismatch=allow_mismatch, overwrite=overwrite)
    with status(f"exporting {source}") as say:
        result = run_export(config, progress=say)
    console.print(parity_table(result))
    for line in failure_lines(result.reports):
        console.print(escape(line), style="red")
    for warning in result.warnings:
        print_warning(warning)
    print_done(f"bundle written to {result.bundle_dir} ({len(result.artifacts)} artifacts)")
    console.print(f"--precision auto (predict, bench, Classifier.load) picks here: "
                  f"{escape(result.auto_choice)}")
    if result.triton_dir is not None:
        print_done(f"Triton model repository entry written to {result.triton_dir}")


def parity_table(result) -> object:
    """A rich table of every artifact's parity reports and of the checks skipped because a
    backend cannot execute that precision here (the failures are :func:`failure_lines`)."""
    from rich.table import Table

    table = Table(title="parity vs PyTorch on held-out inputs", title_justify="left")
    for column, justify in (("artifact", "left"), ("backend", "left"), ("n", "right"),
                            ("top-1", "right"), ("sure top-1", "right"), ("top-5", "right"),
                            ("max|dp|", "right"), ("metric", "left"), ("", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "")
    for artifact in result.artifacts:
        for report in (r for r in result.reports if r.artifact == artifact.file):
            table.add_row(*_report_row(report))
        for skipped in (s for s in result.skipped if s.artifact == artifact.file):
            table.add_row(skipped.artifact, skipped.backend, "-", "-", "-", "-", "-", "-",
                          f"[yellow]skipped[/]: {escape(skipped.reason)}")
    return table


def _report_row(report) -> tuple[str, ...]:
    metric = "-"
    if report.metric:
        metric = (f"{report.metric['name'][:3]} {report.metric['reference']:.3f}"
                  f"->{report.metric['artifact']:.3f}")
    # The gate judges, without labels, the confident samples' top-1 and all samples' top-5.
    sure = ("-" if report.confident_top1_agreement is None else
            f"{report.confident_top1_agreement:.3f} ({report.confident_samples})")
    top5 = "-" if report.top5_containment is None else f"{report.top5_containment:.3f}"
    return (report.artifact, report.backend, str(report.samples), f"{report.top1_agreement:.3f}",
            sure, top5, f"{report.max_abs_error:.0e}", metric,
            "[green]ok[/]" if report.passed else "[red]FAIL[/]")


def failure_lines(reports) -> list[str]:
    """One line per failed parity check. Printed under the table, not as its caption: a caption
    wraps at the table's width, and a log must see each failure whole."""
    return [f"{r.artifact} [{r.backend}]: {'; '.join(r.failures)}" for r in reports
            if not r.passed]
