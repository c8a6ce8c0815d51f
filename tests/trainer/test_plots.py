"""Run plots a reader can read: no legend on top of the curves."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")


def test_curve_legends_sit_below_the_panels(monkeypatch) -> None:
    """Validation metrics crowd at 1.0, where a legend inside the panel hid them."""
    from visionrt.trainer import plots

    monkeypatch.setattr(plots, "_save", lambda fig, path: fig)
    history = [{"epoch": e, "train_loss": 0.7 / e, "val_loss": 0.6, "val_accuracy": 1.0,
                "val_roc_auc": 1.0} for e in (1, 2, 3)]
    figure = plots.plot_curves(history, Path("unused.png"))
    figure.canvas.draw()
    for axis in figure.axes:
        assert axis.get_legend().get_bbox_to_anchor().y1 < axis.get_window_extent().y0
    assert figure.axes[1].get_ylim()[1] > 1.02  # markers at 1.0 drawn whole
    plots._pyplot().close(figure)
