"""`visionrt predict`: classify images (table / JSON / CSV) or write a Kaggle submission."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import typer

from visionrt.errors import check_value

FORMATS = ("table", "json", "csv")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    model: str = typer.Argument(None, help="Bundle directory, .onnx file, or .engine in a "
                                "bundle (with --server: the first image)."),
    inputs: list[str] = typer.Argument(None, help="Image files, folders or globs ('*.jpg')."),
    server: str = typer.Option(None, "--server", help="Classify on a Triton server running a "
                               "visionrt model (`visionrt serve`): http://HOST:PORT or "
                               "grpc://HOST:PORT."),
    model_name: str = typer.Option(None, "--model-name", help="The model's name on --server "
                                   "(default: the one visionrt model it serves)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Classes to show per image."),
    backend: str = typer.Option("auto", help="auto, onnxruntime, onnxruntime-trt, openvino, "
                                "tensorrt."),
    precision: str = typer.Option("auto", help="auto, fp32, fp16, bf16, int8 (explicit = exact)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per backend call."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Path = typer.Option(None, "--output", "-o", help="Write results to FILE."),
    csv_file: Path = typer.Option(None, "--csv", help="Kaggle test CSV (image_name column)."),
    images: Path = typer.Option(None, "--images", help="Folder of <image_name>.jpg for --csv."),
    submission: Path = typer.Option(None, "--submission", help="Submission CSV to write."),
    image_column: str = typer.Option("image_name", "--image-column", help="CSV name column."),
) -> None:
    """Classify images; exit code 1 when any input failed (all others are still reported)."""
    check_value(output_format in FORMATS, "--format", output_format, FORMATS)
    kaggle = (csv_file, images, submission)
    if any(v is not None for v in kaggle) and not all(v is not None for v in kaggle):
        raise typer.BadParameter("--csv, --images and --submission go together")
    if server is not None:
        inputs = [model, *(inputs or [])] if model is not None else inputs
        _check_local_options_unset(backend=backend, precision=precision, device=device)
    elif model is None:
        raise typer.BadParameter("give MODEL (a bundle directory) or --server URL")
    if not inputs and csv_file is None:
        raise typer.BadParameter("give INPUTS (files, folders, globs) or --csv/--images/"
                                 "--submission")
    with _classifier(model, server, model_name, backend, precision, device) as clf:
        if csv_file is not None:
            failed = _submission(clf, csv_file, images, submission, image_column, batch_size)
        else:
            results = clf.predict(inputs, top_k=top_k, batch_size=batch_size)
            _emit(_render(results, output_format, clf.info()), output)
            failed = sum(not r.ok for r in results)
    if failed:
        raise typer.Exit(1)


def _classifier(model: str | None, server: str | None, model_name: str | None, backend: str,
                precision: str, device: str) -> Any:
    if server is not None:
        from visionrt.client import RemoteClassifier

        return RemoteClassifier(server, model_name)
    from visionrt.cli._console import cache_settings
    from visionrt.runtime.base import BACKENDS, PRECISIONS
    from visionrt.runtime.classifier import Classifier

    # Checked here too, so that the message names the flag as typed.
    check_value(backend in ("auto", *BACKENDS), "--backend", backend, ("auto", *BACKENDS))
    check_value(precision in ("auto", *PRECISIONS), "--precision", precision,
                ("auto", *PRECISIONS))
    return Classifier.load(model, backend=backend, precision=precision, device=device,
                           **cache_settings())


def _check_local_options_unset(**options: str) -> None:
    # The served model's backend and precision were fixed by `visionrt serve`.
    for name, value in options.items():
        if value != "auto":
            raise typer.BadParameter(f"--{name} applies to local models; with --server the "
                                     f"server's model runs as `visionrt serve --{name}` set it")


def _render(results: list, output_format: str, info: dict[str, Any]) -> str:
    if output_format == "json":
        return json.dumps([r.to_dict() for r in results], indent=2)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", "rank", "index", "label", "score", "error"])
        for r in results:
            if r.ok:
                for rank, t in enumerate(r.top_k, start=1):
                    writer.writerow([r.input, rank, t.index, t.label, f"{t.score:.6f}", ""])
            else:
                writer.writerow([r.input, "", "", "", "", r.error])
        return buffer.getvalue()
    return _table(results, info)


def _table(results: list, info: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    title = f"{info['arch']} · {info['backend']} {info['precision']} on {info['device']}"
    if "server" in info:
        title = f"{info['arch']} · Triton model {info['model']} at {info['server']}"
    table = Table(title=title, title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column("score", justify="right")
    table.add_column("top-k")
    for r in results:
        if r.ok:
            rest = ", ".join(f"{t.label} {t.score:.3f}" for t in r.top_k[1:])
            table.add_row(r.input, r.label, f"{r.score:.3f}", rest)
        else:
            table.add_row(r.input, "[red]error[/]", "", f"[red]{r.error}[/]")
    from visionrt.cli._console import text_width

    console = Console(file=io.StringIO(), width=text_width(), highlight=False)
    console.print(table)
    failed = sum(not r.ok for r in results)
    console.print(f"{len(results) - failed} classified, {failed} failed")
    return console.file.getvalue()


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text.rstrip("\n"))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    typer.echo(f"wrote {output}")


def _submission(clf: Any, csv_file: Path, images: Path, out: Path, column: str,
                batch_size: int | None) -> int:
    from visionrt.cli._console import print_done, print_error
    from visionrt.runtime.submission import positive_class, read_test_csv, write_submission

    positive = positive_class(clf.spec)
    rows = read_test_csv(csv_file, images, column)
    results = clf.predict([path for _, path in rows], top_k=2, batch_size=batch_size)
    failed = [r for r in results if not r.ok]
    if failed:
        # A submission with holes is rejected by Kaggle: name every failure, write nothing.
        for r in failed:
            print_error(r.error)
        print_error(f"{len(failed)} of {len(rows)} images failed; {out} was not written")
        return len(failed)
    scores = [next(t.score for t in r.top_k if t.index == positive) for r in results]
    write_submission(out, [name for name, _ in rows], scores, column)
    print_done(f"wrote {len(rows)} rows to {out} (target = P({clf.labels[positive]}))")
    return 0
