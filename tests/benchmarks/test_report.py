"""benchmarks/report.py: goals decided by the measured numbers, sections rewritten in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_benchmark

report = load_benchmark("report")


def _row(name: str, precision: str, rounds: list[float]) -> dict:
    ordered = sorted(rounds)
    return {"name": name, "precision": precision, "throughput_rounds": rounds,
            "throughput_best": max(rounds), "throughput_median": ordered[len(ordered) // 2]}


def _peers(ours_over_peer: float) -> dict:
    """Every int8 cell: visionrt runs ``ours_over_peer`` x the best peer in every round."""
    groups = []
    for model, batch in (("lite0", 1), ("lite0", 16), ("resnet50", 1), ("resnet50", 16)):
        peer = [100.0, 110.0, 90.0]
        rows = [_row("onnxruntime default", "int8", [50.0, 55.0, 45.0]),
                _row("openvino default", "int8+bf16", peer),
                _row("visionrt (openvino)", "int8", [v * ours_over_peer for v in peer])]
        if batch > 1:
            rows.append(_row("visionrt (openvino, throughput)", "int8",
                             [v * (ours_over_peer + 0.25) for v in peer]))
        groups.append({"model": model, "batch_size": batch, "file": "model.int8.onnx",
                       "precision": "int8", "contestants": rows,
                       "torch": _row("torch eager", "fp32", [10.0, 10.0, 10.0])})
    return {"environment": {"cpu": "test cpu", "cores": 2, "versions": {}},
            "method": {"rounds": 3, "seconds_per_round": 1.0}, "groups": groups}


def _status(peers: dict, goal_start: str) -> str:
    lines = report.goals_table(peers, None)
    row = next(line for line in lines if line.startswith(f"| {goal_start}"))
    return row.rsplit("|", 2)[1].strip()


def test_099x_is_not_met_against_a_1x_goal() -> None:
    assert _status(_peers(0.99), "default path >= 1.0x") == "**not met**"
    assert _status(_peers(1.0), "default path >= 1.0x") == "met"


def test_goals_without_data_are_not_measured() -> None:
    assert _status(_peers(1.1), "same, fp32 file") == "not measured"  # no fp32 groups
    assert _status(_peers(0.99), ">= 1.2x the best peer") == "met"  # 0.99 + 0.25
    assert _status(_peers(1.1), ">= 10x PyTorch") == "met"


def _fp32_groups(peers: dict, ort: float, openvino_bf16: float) -> dict:
    """Add fp32-file groups: visionrt runs fp32 at 1.1x ORT and bf16 at 0.9x OpenVINO's default."""
    for model, batch in (("lite0", 1), ("lite0", 16), ("resnet50", 1), ("resnet50", 16)):
        rounds = {"fp32": [ort] * 3, "bf16": [openvino_bf16] * 3}
        rows = [_row("onnxruntime default", "fp32", rounds["fp32"]),
                _row("openvino default", "bf16", rounds["bf16"]),
                _row("visionrt (openvino)", "fp32", [ort * 1.1] * 3),
                _row("visionrt (openvino)", "bf16", [openvino_bf16 * 0.9] * 3)]
        peers["groups"].append({"model": model, "batch_size": batch, "file": "model.fp32.onnx",
                                "precision": "fp32", "contestants": rows, "torch": None})
    return peers


@pytest.mark.parametrize("ort, openvino_bf16, status", [
    (100.0, 60.0, "met"),  # no AMX: bf16 is slow, ORT fp32 is the best peer -> fp32 vs fp32
    (100.0, 300.0, "**not met**"),  # AMX: OpenVINO's bf16 is the best peer -> bf16 vs bf16
])
def test_fp32_file_goal_compares_the_precision_the_best_peer_executed(ort, openvino_bf16,
                                                                      status) -> None:
    peers = _fp32_groups(_peers(1.1), ort, openvino_bf16)
    assert _status(peers, "same, fp32 file, like for like") == status


def test_summary_and_results_replace_their_marked_sections(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- summary:start -->\nold 1.24 -> 0.60 s\n<!-- summary:end -->\n"
                      "tail\n")
    report.replace_section(readme, report.SUMMARY_START, report.SUMMARY_END,
                           report.summary(_peers(1.1), None, minutes=21.4))
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("tail\n")
    assert "ran for 21 minutes" in text and "| lite0, 16 |" in text
    with pytest.raises(SystemExit, match="no <!-- results:start -->"):
        report.replace_section(readme, report.START, report.END, "x")
