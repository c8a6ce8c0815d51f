"""The ``visionrt`` command line: a thin shell over library calls.

Each command module defines ``register(app)`` and imports heavy packages (torch, onnx, ...) only
inside its commands, so ``visionrt --help`` works without torch. Library errors print one line and
exit 1; usage errors exit 2 (typer/click).
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from visionrt import __version__
from visionrt.errors import VisionRTError

COMMAND_MODULES = (
    "synth",
    "train",
    "export",
    "predict",
    "bench",
    "serve",
    "doctor",
    "quickstart",
)

app = typer.Typer(
    name="visionrt",
    help="Fine-tune pretrained image classifiers and deploy them fast and verified "
    "(ONNX fp32/fp16/int8, OpenVINO, TensorRT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: whole option names, "[default: x]" kept as text
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"visionrt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"visionrt.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"visionrt.cli.{name}":
                continue  # command not built in this checkout
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    from visionrt.cli._console import print_error

    try:
        app()
    except VisionRTError as exc:
        print_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        print_error("interrupted")
        sys.exit(130)
