"""PNG plot of a bench report: throughput vs batch size, accuracy vs speed, latency per row.

matplotlib is imported inside the function (it is part of the ``train`` extra, not the runtime).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

MODE_STYLE = {"engine": "-", "end_to_end": "--", "server": ":"}
METRIC_NAMES = {"top1_agreement": "top-1 agreement with PyTorch", "accuracy": "accuracy",
                "roc_auc": "ROC AUC"}


def plot_report(report: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write a three-panel PNG for ``report`` (a BenchReport or its ``to_dict()``).

    Left: throughput (images/s, log scale) against batch size, one line per backend, executed
    precision and mode, its legend naming each line's accuracy; torch rows dashed grey. Middle:
    accuracy against speed, one point per line at its best throughput, so that fp32, fp16 and int8
    are chosen from one picture (as Ultralytics' benchmark shows them). Right: p50/p90/p99 latency
    of every row.

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
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(20, 6),
                                                 gridspec_kw={"width_ratios": [1, 1, 1.4]})
    colors = _colors(rows)
    _throughput_panel(left, rows, colors)
    labels = _accuracy_panel(middle, rows, colors)
    _latency_panel(right, rows)
    environment = data.get("environment", {})
    machine = f"{environment.get('cpu', '?')}, {environment.get('cores', '?')} cores"
    if environment.get("gpu"):
        machine += f", {environment['gpu']}"
    figure.suptitle(f"{title or 'visionrt bench'} — {machine}", fontsize=11)
    figure.tight_layout()
    _place_labels(middle, labels)  # after the layout: text extents are final
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _label(row: dict[str, Any]) -> str:
    label = f"{row['backend']} {row['precision']}"
    return label if row["mode"] == "engine" else f"{label} ({row['mode'].replace('_', '-')})"


def _colors(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One colour per line, shared by the throughput and accuracy panels (torch lines grey)."""
    labels = [_label(row) for row in rows if row["backend"] != "torch"]
    colors = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}
    colors.update({_label(row): "grey" for row in rows if row["backend"] == "torch"})
    return colors


def _legend_label(row: dict[str, Any]) -> str:
    """The line's name and, when the export measured it, its accuracy (as the table shows it)."""
    from visionrt.bench.parity import describe

    parity = row.get("parity")
    return _label(row) if not parity else f"{_label(row)}: {describe(parity)}"


def _throughput_panel(axis: Any, rows: list[dict[str, Any]],
                      colors: dict[str, str] | None = None) -> None:
    colors = colors or _colors(rows)
    lines: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    modes: dict[str, str] = {}
    color_of: dict[str, str] = {}
    for row in rows:
        if row["mode"] == "server":
            continue
        lines[_legend_label(row)].append((row["batch_size"], row["throughput"],
                                          bool(row.get("below_minimum"))))
        modes[_legend_label(row)] = row["mode"] if row["backend"] != "torch" else "torch"
        color_of[_legend_label(row)] = colors[_label(row)]
    for label, points in lines.items():
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        style = {"color": color_of[label], "linestyle": "--" if modes[label] == "torch" else
                 MODE_STYLE.get(modes[label], "-")}
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


def _accuracy_panel(axis: Any, rows: list[dict[str, Any]],
                    colors: dict[str, str]) -> list[tuple[str, float, float]]:
    """Accuracy (y) against throughput (x, log) of each backend/precision/mode at its best batch.

    Returns the (text, x, y) labels of the points, placed by ``_place_labels`` once the figure's
    layout is final.
    """
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("parity") and row["throughput"] > best.get(_label(row), {}).get(
                "throughput", -1.0):
            best[_label(row)] = row
    metrics = sorted({row["parity"]["metric"] for row in best.values()})
    axis.set_title("accuracy vs speed (best batch of each line)")
    axis.grid(True, which="both", alpha=0.3)
    if not best:
        axis.text(0.5, 0.5, "no accuracy recorded: bench a bundle written by visionrt export",
                  ha="center", va="center", fontsize=9, wrap=True, transform=axis.transAxes)
        axis.set_xticks([])
        axis.set_yticks([])
        return []
    labels = []
    for label, row in sorted(best.items(), key=lambda i: i[1]["throughput"]):
        value, failed = row["parity"]["value"], row["parity"].get("passed") is False
        # an artifact written with --allow-mismatch: hollow, and said in its label
        axis.scatter([row["throughput"]], [value], s=40, zorder=3, edgecolors=colors[label],
                     facecolors="none" if failed else colors[label])
        labels.append((f"{label} b{row['batch_size']}\n{value:.3f}"
                       + (" (failed its gate)" if failed else ""), row["throughput"], value))
    axis.set_xscale("log")
    axis.margins(x=0.3)  # room for the right-most point's label
    _plain_numbers(axis.xaxis)
    values = [row["parity"]["value"] for row in best.values()]
    low = min(values)
    axis.set_ylim(low - max(0.02, 0.15 * (1.0 - low)), 1.005 if max(values) <= 1 else None)
    axis.set_xlabel("throughput (images/s)")
    axis.set_ylabel(" / ".join(METRIC_NAMES.get(m, m) for m in metrics)
                    + " (from the export's parity check)")
    return labels


# Offsets (points) tried in turn for a point's label: above, below, then further out.
LABEL_OFFSETS = ((5, 4), (5, -22), (5, 26), (5, -44), (5, 48), (5, -66), (5, 70), (5, -88))


def _place_labels(axis: Any, labels: list[tuple[str, float, float]]) -> None:
    """Annotate each point at the first offset where its text overlaps no label placed before.

    Points of equal accuracy (every artifact at 1.000) sit on one line; fixed offsets made their
    long labels print over each other.
    """
    renderer = axis.figure.canvas.get_renderer()
    placed: list[Any] = []
    for text, x, y in labels:
        for offset in LABEL_OFFSETS:
            note = axis.annotate(text, (x, y), textcoords="offset points", fontsize=7,
                                 xytext=offset)
            box = note.get_window_extent(renderer).expanded(1.02, 1.05)
            if not any(box.overlaps(other) for other in placed) or offset == LABEL_OFFSETS[-1]:
                placed.append(box)
                break
            note.remove()


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
