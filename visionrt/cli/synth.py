"""`visionrt synth`: write a deterministic synthetic ImageFolder."""

from __future__ import annotations

from pathlib import Path

import typer

from visionrt.cli._console import print_done


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)


def synth(
    out: Path = typer.Argument(..., help="Folder to write OUT/<class>/<image>.png into."),
    classes: int = typer.Option(4, help="Number of classes (2-8)."),
    per_class: int = typer.Option(60, "--per-class", help="Images per class."),
    size: int = typer.Option(96, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Random seed; same seed, same images."),
) -> None:
    """Make a synthetic image-classification data set (classes differ in shape, texture, colour)."""
    from visionrt.synth import class_names, make_synthetic_dataset

    make_synthetic_dataset(out, classes=classes, per_class=per_class, size=size, seed=seed)
    print_done(f"wrote {classes * per_class} images of {classes} classes "
               f"({', '.join(class_names(classes))}) to {out}")
