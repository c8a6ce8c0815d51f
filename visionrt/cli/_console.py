"""Shared console helpers for CLI commands (rich)."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One red line on stderr."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def print_done(message: str) -> None:
    from rich.markup import escape

    console.print(f"[green]✓[/] {escape(message)}")


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

