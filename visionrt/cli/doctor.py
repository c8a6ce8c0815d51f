"""`visionrt doctor`: what is installed and which backends can run here."""

from __future__ import annotations

import json

import typer

from visionrt.cli._console import console

DETAIL_WIDTH = 100


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    format: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Show versions, ONNX Runtime providers that really load, GPUs, and usable backends."""
    from rich.markup import escape
    from rich.table import Table

    from visionrt.cli.diagnostics import collect
    from visionrt.errors import check_value

    check_value(format in ("table", "json"), "--format", format, ("table", "json"))
    diag = collect()
    if format == "json":
        console.print_json(json.dumps(diag.to_dict()))
        return
    console.print(f"[bold]visionrt doctor[/]  Python {diag.python} on {diag.platform}")
    console.print(f"CPU: {diag.cpu} ({diag.cores} cores)  /dev/shm: {diag.shm_mb} MB  "
                  f"free disk: {diag.free_disk_gb} GB")
    versions = Table(title="Packages", show_header=True)
    versions.add_column("package")
    versions.add_column("version")
    for name, version in diag.versions.items():
        versions.add_row(name, version or "[dim]not installed[/]")
    console.print(versions)
    providers = Table(title="ONNX Runtime providers (a test session on each)")
    providers.add_column("provider")
    providers.add_column("result")
    for name, result in diag.ort_providers.items():
        providers.add_row(name, escape(result))
    console.print(providers)
    console.print("GPUs: " + (", ".join(diag.gpus) if diag.gpus else "none"))
    console.print(f"TensorRT path: {escape(diag.gpu_path)}")
    if diag.trt_libraries:
        console.print("TensorRT libraries: " + ", ".join(diag.trt_libraries))
    backends = Table(title="Backends")
    backends.add_column("backend")
    backends.add_column("usable")
    # The detail is prose (a reason and what to do): wrapped inside its cell, so a piped doctor
    # stays readable while paths elsewhere are never wrapped.
    backends.add_column("detail", max_width=DETAIL_WIDTH, overflow="fold")
    for status in diag.backends:
        backends.add_row(status.name, "[green]yes[/]" if status.usable else "[red]no[/]",
                         escape(status.detail))
    console.print(backends)
    for note in diag.warnings:
        console.print(f"[yellow]warning:[/] {escape(note)}")
