"""benchmarks/serve_speed.py: goals computed from paired rounds, its README section rewritten in
place (the served and in-process measurements themselves come from tested library code)."""

from __future__ import annotations

from helpers import load_benchmark

from visionrt.bench.stats import summarize
from visionrt.bench.timing import Measurement

serve_speed = load_benchmark("serve_speed")
NAMES = ("in-process predict (batch 32)", "served, 16 clients, HTTP", "served, 16 clients, gRPC",
         "in-process predict (1 file per call)", "served, 1 client, HTTP",
         "served, 1 client, gRPC")


def _rounds(throughputs: list[float], p99_ms: list[float]) -> list[Measurement]:
    return [Measurement(t, summarize([p / 1000] * 5), int(t), 1.0)
            for t, p in zip(throughputs, p99_ms, strict=True)]


def _results() -> dict[str, list[Measurement]]:
    # The load doubles in round 2: paired ratios see through it, medians of each side do not.
    return {NAMES[0]: _rounds([100, 50, 100], [10, 40, 10]),
            NAMES[1]: _rounds([90, 45, 90], [16, 46, 13]),
            NAMES[2]: _rounds([120, 60, 120], [12, 42, 11]),
            NAMES[3]: _rounds([150, 75, 150], [8, 30, 9]),
            NAMES[4]: _rounds([140, 70, 140], [15, 33, 12]),
            NAMES[5]: _rounds([145, 72, 145], [10, 31, 9])}


def test_goals_are_paired_within_rounds():
    goals = serve_speed.summary(_results())["goals"]
    assert goals["HTTP"]["throughput_ratio"] == 0.9
    assert goals["gRPC"]["throughput_ratio"] == 1.2
    assert goals["HTTP"]["throughput_ratio_vs_single_files"] == 0.6
    assert goals["HTTP"]["p99_difference_ms"] == 3.0  # median of +7, +3, +3
    assert goals["gRPC"]["p99_difference_ms"] == 1.0  # median of +2, +1, 0


def test_section_is_rewritten_in_place(tmp_path):
    report = {"environment": {"cpu": "cpu", "cores": 2, "loadavg_start": [1.0],
                              "loadavg_end": [2.0]},
              "config": {"triton": "2.51.0", "pytriton": "0.7.0", "runs": "openvino int8 on cpu",
                         "images": "64 JPEGs", "rounds": 3, "seconds": 5, "warmup": 2},
              "summary": serve_speed.summary(_results())}
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n", encoding="utf-8")
    serve_speed.write_section(readme, serve_speed.render(report))
    serve_speed.write_section(readme, serve_speed.render(report))  # idempotent
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nintro\n") and text.count(serve_speed.START) == 1
    assert "| served img/s at 16 clients / in-process (>= 0.8x), paired | 0.9x | 1.2x |" in text
    assert "| served p99 at 1 client - in-process p99 (<= +5 ms), paired | +3.0 ms | +1.0 ms |" \
        in text
