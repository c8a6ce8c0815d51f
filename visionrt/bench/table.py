"""The bench report as a rich Table (rich is a base dependency of visionrt)."""

from __future__ import annotations

from typing import Any

_MODE_NAMES = {"engine": "engine", "end_to_end": "end-to-end", "server": "server"}


def results_table(data: dict[str, Any]) -> Any:
    """A rich Table of a bench report's ``to_dict()``: one line per row, torch speed-up last.
    A ``*`` marks the throughput of a row with too few samples (the report's notes say why)."""
    from rich.table import Table

    environment = data["environment"]
    table = Table(title=f"{environment['cpu']} ({environment['cores']} cores)"
                  + (f", {environment['gpu']}" if environment.get("gpu") else ""))
    for column in ("backend", "precision", "mode", "batch", "clients", "img/s", "p50 ms",
                   "p90 ms", "p99 ms", "max ms", "cold start ms (load+1st)", "RSS MB",
                   "vs torch"):
        table.add_column(column, justify="left" if column in ("backend", "precision", "mode")
                         else "right")
    for row in data["results"]:
        latency = row["latency_ms"]
        speedup = row.get("speedup_vs_torch")
        cold = f"{row['cold_start_ms']:.0f} ({row['load_ms']:.0f}+{row['first_inference_ms']:.0f})"
        table.add_row(row["backend"], row["precision"], _MODE_NAMES[row["mode"]],
                      str(row["batch_size"]), str(row["concurrency"]),
                      f"{row['throughput']:.1f}{'*' if row.get('below_minimum') else ''}",
                      f"{latency['p50']:.2f}", f"{latency['p90']:.2f}",
                      f"{latency['p99']:.2f}", f"{latency['max']:.2f}", cold,
                      f"{row['peak_rss_mb']:.0f}", f"{speedup:.1f}x" if speedup else "")
    return table
