"""PNG plot of a bench report: throughput vs batch size, and latency percentiles per row.

matplotlib is imported inside the function (it is part of the ``train`` extra, not the runtime).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

MODE_STYLE = {"engine": "-", "end_to_end": "--", "server": ":"}


def plot_report(report: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write a two-panel PNG for ``report`` (a BenchReport or its ``to_dict()``).

    Left: throughput (images/s, log scale) against batch size, one line per backend, executed
    precision and mode; torch rows dashed grey. Right: p50/p90/p99 latency of every row.

    Returns:
        The written path.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    from visionrt._optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    data = report if isinstance(report, dict) else report.to_dict()
    rows = data["results"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5),
                                         gridspec_kw={"width_ratios": [1, 1.4]})
    _throughput_panel(left, rows)
    _latency_panel(right, rows)
    environment = data.get("environment", {})
    machine = f"{environment.get('cpu', '?')}, {environment.get('cores', '?')} cores"
    if environment.get("gpu"):
        machine += f", {environment['gpu']}"
    figure.suptitle(f"{title or 'visionrt bench'} — {machine}", fontsize=11)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _label(row: dict[str, Any]) -> str:
    label = f"{row['backend']} {row['precision']}"
    return label if row["mode"] == "engine" else f"{label} ({row['mode'].replace('_', '-')})"


def _throughput_panel(axis: Any, rows: list[dict[str, Any]]) -> None:
    lines: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    modes: dict[str, str] = {}
    for row in rows:
        if row["mode"] == "server":
            continue
        lines[_label(row)].append((row["batch_size"], row["throughput"],
                                   bool(row.get("below_minimum"))))
        modes[_label(row)] = row["mode"] if row["backend"] != "torch" else "torch"
    for label, points in lines.items():
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        style = {"color": "grey", "linestyle": "--"} if modes[label] == "torch" else {
            "linestyle": MODE_STYLE.get(modes[label], "-")}
        axis.plot(xs, ys, marker="o", label=label, **style)
        for x, y, starred in points:
            # * as in the table: too few samples to compare (the report's notes say why)
            axis.annotate((f"{y:.0f}" if y >= 10 else f"{y:.1f}") + ("*" if starred else ""),
                          (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axis.set_xscale("log", base=2)
    batches = sorted({x for points in lines.values() for x, _, _ in points})
    axis.set_xticks(batches, [str(b) for b in batches])
    axis.set_yscale("log")
    _plain_numbers(axis.yaxis)
    axis.set_xlabel("batch size")
    axis.set_ylabel("throughput (images/s)")
    axis.set_title("throughput vs batch size")
    axis.grid(True, which="both", alpha=0.3)
    if lines:
        # below the panel: inside it, the legend hid points and their values
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
                    frameon=False)


def _plain_numbers(axis: Any) -> None:
    """Log-axis labels as 600, not 6x10^2; matplotlib's own choice of which ticks to label."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _latency_panel(axis: Any, rows: list[dict[str, Any]]) -> None:
    names = [_row_name(row) for row in rows]
    width = 0.27
    for offset, key in enumerate(("p50", "p90", "p99")):
        values = [row["latency_ms"][key] for row in rows]
        positions = [i + (offset - 1) * width for i in range(len(rows))]
        axis.bar(positions, values, width=width, label=key)
    axis.set_xticks(range(len(rows)))
    axis.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    axis.set_yscale("log")
    _plain_numbers(axis.yaxis)
    axis.set_ylabel("latency per call / request (ms)")
    axis.set_title("latency percentiles")
    axis.grid(True, axis="y", which="both", alpha=0.3)
    if rows:
        axis.legend(fontsize=8)


def _row_name(row: dict[str, Any]) -> str:
    name = f"{row['backend']} {row['precision']} b{row['batch_size']}"
    if row["mode"] == "server":
        return f"{name} c{row['concurrency']} server"
    return name if row["mode"] == "engine" else f"{name} e2e"
