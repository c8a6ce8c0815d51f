"""Bench rows carry the accuracy the export measured for the artifact they ran (issue 14)."""

from __future__ import annotations

import pytest
from runtime_helpers import tiny_spec, write_bundle

from visionrt.bench.parity import artifact_parity, describe
from visionrt.bench.run import BenchConfig, run_bench

pytest.importorskip("onnx")


def test_each_row_carries_its_artifacts_parity(tmp_path):
    bundle = write_bundle(tmp_path / "b", tiny_spec(), int8_top1=0.93)
    report = run_bench(BenchConfig(model=bundle, backends=("onnxruntime",), batch_sizes=(2,),
                                   precisions=("fp32", "int8"), duration=0.1, warmup=0.02))
    found = {r.requested_precision: r.parity for r in report.results}
    assert found["fp32"]["value"] == 1.0 and found["int8"]["value"] == 0.93
    assert found["int8"]["metric"] == "top1_agreement"
    assert report.results[-1].to_dict()["parity"]["value"] == 0.93


def test_task_metric_is_preferred_and_the_backends_own_report_is_used(tmp_path):
    import json

    bundle = write_bundle(tmp_path / "b", tiny_spec(), int8_top1=0.9)
    manifest = json.loads((bundle / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["file"] == "model.int8.onnx")
    int8["parity"]["other_backends"] = [{
        "backend": "openvino", "samples": 64, "top1_agreement": 0.8,
        "metric": {"name": "accuracy", "reference": 0.91, "artifact": 0.905}}]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    ov = artifact_parity(bundle, "openvino", "/x/model.int8.onnx")
    assert (ov["metric"], ov["value"], ov["checked_on"]) == ("accuracy", 0.905, "openvino")
    assert describe(ov) == "acc 0.905 (-0.5)"
    ort = artifact_parity(bundle, "onnxruntime", "model.int8.onnx")
    assert describe(ort) == "top-1 0.900"
    assert artifact_parity(bundle / "model.fp32.onnx", "onnxruntime", "model.fp32.onnx") is None
    assert describe(None) == "-"


def _plot_rows():
    def parity(value):
        return {"metric": "top1_agreement", "value": value, "confident_top1_agreement": value,
                "passed": value > 0.9}

    return [{"backend": b, "precision": p, "batch_size": n, "mode": "engine", "throughput": t,
             "parity": parity(v) if v is not None else None}
            for b, p, n, t, v in [("openvino", "fp32", 1, 140.0, 1.0),
                                  ("openvino", "fp32", 16, 120.0, 1.0),
                                  ("openvino", "int8", 1, 320.0, 0.94),
                                  ("openvino", "int8", 16, 280.0, 0.94),
                                  ("torch", "fp32", 1, 40.0, None)]]


def test_plot_shows_each_lines_accuracy_next_to_its_speed():
    """The accuracy panel puts one point per line at its best throughput and its accuracy, in the
    line's colour; the throughput panel's legend names each line's accuracy."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionrt.bench.plot import _accuracy_panel, _colors, _place_labels, _throughput_panel

    rows = _plot_rows()
    colors = _colors(rows)
    figure, (left, middle) = plt.subplots(1, 2)
    _throughput_panel(left, rows, colors)
    _place_labels(middle, _accuracy_panel(middle, rows, colors))
    points = sorted(tuple(c.get_offsets()[0]) for c in middle.collections)
    assert points == [(140.0, 1.0), (320.0, 0.94)]  # best batch of each line; torch has none
    assert sorted(t.get_text() for t in middle.texts) == ["openvino fp32 b1\n1.000",
                                                          "openvino int8 b1\n0.940"]
    assert "top-1 agreement" in middle.get_ylabel()
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert "openvino int8: top-1 0.940 (conf 0.940)" in legend and "torch fp32" in legend
    int8_line = next(line for line in left.lines if line.get_label().startswith("openvino int8"))
    int8_point = next(c for c in middle.collections if tuple(c.get_offsets()[0]) == (320.0, 0.94))
    assert matplotlib.colors.same_color(int8_line.get_color(), int8_point.get_facecolor()[0])
    plt.close(figure)


def test_plot_marks_an_artifact_that_failed_its_gate():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionrt.bench.plot import _accuracy_panel, _colors, _place_labels

    rows = [dict(row, parity=dict(row["parity"], passed=False)) if row["precision"] == "int8"
            else row for row in _plot_rows()]
    figure, axis = plt.subplots()
    _place_labels(axis, _accuracy_panel(axis, rows, _colors(rows)))
    texts = sorted(t.get_text() for t in axis.texts)
    assert texts == ["openvino fp32 b1\n1.000", "openvino int8 b1\n0.940 (failed its gate)"]
    hollow = next(c for c in axis.collections if tuple(c.get_offsets()[0]) == (320.0, 0.94))
    assert len(hollow.get_facecolor()) == 0 or hollow.get_facecolor()[0][3] == 0
    plt.close(figure)


def test_labels_of_points_with_equal_accuracy_do_not_overlap():
    # A bundle whose every artifact agrees 1.000 puts all points on one line, some close in speed.
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionrt.bench.plot import _accuracy_panel, _colors, _place_labels

    rows = [{"backend": "openvino", "precision": p, "batch_size": 16, "mode": mode,
             "throughput": t, "parity": {"metric": "top1_agreement", "value": 1.0}}
            for p, mode, t in [("fp32", "end_to_end", 175.0), ("fp32", "server", 224.0),
                               ("fp32", "engine", 275.0), ("int8", "end_to_end", 278.0),
                               ("int8", "server", 410.0), ("int8", "engine", 625.0)]]
    figure, axis = plt.subplots(figsize=(6, 4))
    _place_labels(axis, _accuracy_panel(axis, rows, _colors(rows)))
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in axis.texts]
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(figure)


def test_plot_of_a_bare_model_says_why_there_is_no_accuracy():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionrt.bench.plot import _accuracy_panel, _colors

    rows = [dict(row, parity=None) for row in _plot_rows()]
    figure, axis = plt.subplots()
    _accuracy_panel(axis, rows, _colors(rows))
    assert not axis.collections
    assert "no accuracy recorded" in axis.texts[0].get_text()
    plt.close(figure)
