"""Shared console helpers for CLI commands (rich)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions

# Output that is not a terminal (a pipe, a log file, CI, a test runner) is laid out this wide, so
# rich never hard-wraps a line: logs and greps see whole paths. Tables still take only the width
# their cells need.
UNWRAPPED_WIDTH = 10_000


class CliConsole(Console):
    """A rich Console that is as wide as a terminal when it writes to one, else unwrapped.

    The decision is taken at every print, not at creation: the same console object serves a
    terminal session and a captured one (pytest, typer's CliRunner swap ``sys.stdout``).
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self.is_terminal or self._width is not None:
            return size
        return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


console = CliConsole(highlight=False)
err_console = CliConsole(stderr=True, highlight=False)


def text_width() -> int:
    """The width to render text for stdout: the terminal's, or unwrapped when not a terminal."""
    return console.width


@contextmanager
def status(title: str) -> Iterator[Callable[[str], None]]:
    """Show that ``title`` is under way; yields a function that reports each stage.

    On a terminal: a spinner whose text follows the stages. Elsewhere (logs, CI), where a spinner
    shows nothing: one line per stage, so a long step is never silent.
    """
    from rich.markup import escape

    if console.is_terminal:
        with console.status(f"[bold]{title}[/] ...", spinner="dots") as spinner:
            yield lambda message: spinner.update(f"[bold]{title}[/]: {escape(message)} ...")
    else:
        yield lambda message: console.print(f"  [dim]{escape(message)} ...[/]")


def print_error(message: str) -> None:
    """One red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def print_done(message: str) -> None:
    from rich.markup import escape

    console.print(f"[green]✓[/] {escape(message)}")


def print_unreadable(path: str, error: str) -> None:
    """``unreadable <error>``: image errors name their file first, so the path shows once."""
    from rich.markup import escape

    shown = error if error.startswith(path) else f"{path}: {error}"
    console.print(f"[red]unreadable[/] {escape(shown)}")


def print_warning(message: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning:[/] {escape(message)}")


LIST_EXAMPLES = {int: "1,8,32", float: "0.8,1.2"}
LIST_ITEMS = {str: "names", int: "whole numbers", float: "numbers"}


def parse_csv_list(value: str, *, name: str, cast=str, example: str | None = None) -> list:
    """Split ``"a,b,c"`` into a list; an empty item or one ``cast`` refuses is a ConfigError
    naming the flag and the value as typed (``--batch-sizes 1,x is invalid; ...``)."""
    from visionrt.errors import ConfigError

    items = [v.strip() for v in value.split(",")]
    try:
        if not value.strip() or any(not v for v in items):
            raise ValueError(value)
        return [cast(v) for v in items]
    except ValueError:
        raise ConfigError(f"{name} {value or repr(value)} is invalid; expected comma-separated "
                          f"{LIST_ITEMS[cast]}, e.g. {name} {example or LIST_EXAMPLES[cast]}",
                          source=name, actual=value) from None


def cache_settings() -> dict[str, Any]:
    """``cache_dir`` and ``cache_max_mb`` for ``Classifier.load`` from ``VISIONRT_CACHE_DIR`` and
    ``VISIONRT_CACHE_MAX_MB`` (unset: the library's defaults). The environment is read here, at
    the edge; the library only takes values.
    """
    from visionrt.errors import ConfigError

    settings: dict[str, Any] = {}
    directory = os.environ.get("VISIONRT_CACHE_DIR", "").strip()
    if directory:
        settings["cache_dir"] = Path(directory).expanduser()
    raw = os.environ.get("VISIONRT_CACHE_MAX_MB", "").strip()
    if raw:
        if not raw.isdigit():
            raise ConfigError(f"VISIONRT_CACHE_MAX_MB={raw!r} is not a whole number of MB",
                              source="VISIONRT_CACHE_MAX_MB", actual=raw,
                              hint="set it to e.g. 2048, or unset it for the default")
        settings["cache_max_mb"] = int(raw)
    return settings
