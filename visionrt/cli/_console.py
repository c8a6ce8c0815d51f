"""Shared console helpers for CLI commands (rich)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
