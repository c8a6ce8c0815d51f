"""Shared console helpers for CLI commands (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def print_warning(message: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning:[/] {escape(message)}")


def parse_csv_list(value: str, *, name: str, cast=str) -> list:
    """Split ``"a,b,c"`` into a list, with a clear error for empty items."""
    from visionrt.errors import ConfigError

    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise ConfigError(f"{name} = {value!r}: expected a comma-separated list like 1,8,32")
    try:
        return [cast(v) for v in items]
    except ValueError as exc:
        raise ConfigError(f"{name} = {value!r}: {exc}") from exc


def require_path(path: Path, what: str) -> Path:
    from visionrt.errors import ConfigError

    if not path.exists():
        raise ConfigError(f"{what} not found: {path}", source=str(path))
    return path
