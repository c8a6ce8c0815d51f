"""Render the JSON of cpu_peers.py / e2e_jpeg.py / `visionrt bench` into markdown: the tables and
the goals of benchmarks/README.md, and the headline summary of the top-level README.md.

    python benchmarks/report.py --peers peers.json --e2e e2e.json --bench bench.json \
        [--minutes N] [--write benchmarks/README.md] [--summary README.md]

Without ``--write`` / ``--summary`` the text is printed; with them it replaces the text between
the ``<!-- results:start -->`` and ``<!-- results:end -->`` markers (``--write``) or the
``<!-- summary:start -->`` and ``<!-- summary:end -->`` markers (``--summary``) of that file.
Every figure those sections show comes from here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import _goals
from _common import replace_section
from _contest import paired_ratio  # noqa: E402 - the scripts share one directory
from _goals import best_peer, goals_table

START, END = "<!-- results:start -->", "<!-- results:end -->"
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"


def _fmt(row: dict[str, Any] | None) -> str:
    if not row:
        return "–"
    return f"{row['throughput_best']:.0f} ({row['throughput_median']:.0f})"


def peers_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| model | batch | file | PyTorch eager | ONNX Runtime default | OpenVINO default "
        "| visionrt default path | visionrt / best peer (paired) | visionrt / torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in data["groups"]:
        rows = {r["name"]: r for r in group["contestants"]}
        ov = rows.get("openvino default")
        for ours in (r for r in group["contestants"] if r["name"].startswith("visionrt")):
            peer = max((rows[n] for n in ("onnxruntime default", "openvino default") if n in rows),
                       key=lambda r: r["throughput_median"])
            torch = group.get("torch")
            ratio_torch = (f"{ours['throughput_median'] / torch['throughput_median']:.1f}x"
                           if torch else "–")
            lines.append(
                f"| {group['model']} | {group['batch_size']} | {group['file']} "
                f"| {_fmt(torch)} | {_fmt(rows.get('onnxruntime default'))} "
                f"| {_fmt(ov)} {ov['precision'] if ov else ''} "
                f"| {_fmt(ours)} {ours['name'].removeprefix('visionrt ')} {ours['precision']} "
                f"| **{paired_ratio(ours, peer):.2f}x** "
                f"(best/best {ours['throughput_best'] / peer['throughput_best']:.2f}x) "
                f"| {ratio_torch} |")
    return lines


def e2e_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| model | precision | batch | engine-only | end-to-end from JPEG | e2e / engine (paired) "
        "| plain PIL+torchvision+ORT loop (faster variant) | e2e / plain loop (paired) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in data["groups"]:
        rows = {r["name"]: r for r in group["contestants"]}
        plains = [r for name, r in rows.items() if name.startswith("plain")]
        plain = max(plains, key=lambda r: r["throughput_median"]) if plains else None
        e2e, engine = rows["visionrt end-to-end"], rows["visionrt engine-only"]
        vs_plain = f"**{paired_ratio(e2e, plain):.2f}x**" if plain else "–"
        lines.append(
            f"| {group['model']} | {group['precision']} | {group['batch_size']} "
            f"| {_fmt(engine)} | {_fmt(e2e)} "
            f"| **{paired_ratio(e2e, engine):.2f}x** | {_fmt(plain)} "
            f"| {vs_plain} |")
    return lines


def machine_line(data: dict[str, Any]) -> str:
    env = data["environment"]
    return (f"Machine: {env['cpu']}, {env['cores']} cores ({', '.join(env.get('cpu_flags', []))}), "
            f"GPU: {env.get('gpu') or 'none'}; onnxruntime {env['versions'].get('onnxruntime')}, "
            f"openvino {env['versions'].get('openvino')}, torch {env['versions'].get('torch')}; "
            f"load average at start {env.get('loadavg_start')}, at end {env.get('loadavg_end')}.")


def bench_table(data: dict[str, Any]) -> list[str]:
    lines = ["| backend | precision | mode | batch | clients | img/s | p50 ms | p90 ms | p99 ms "
             "| max ms | cold start ms (load + 1st) | peak RSS MB | vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in data["results"]:
        lat = row["latency_ms"]
        speedup = row.get("speedup_vs_torch")
        lines.append(
            f"| {row['backend']} | {row['precision']} | {row['mode']} | {row['batch_size']} "
            f"| {row['concurrency']} | {row['throughput']:.1f} | {lat['p50']:.2f} "
            f"| {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} "
            f"| {row['cold_start_ms']:.0f} ({row['load_ms']:.0f} + {row['first_inference_ms']:.0f})"
            f" | {row['peak_rss_mb']:.0f} | {f'{speedup:.1f}x' if speedup else ''} |")
    return lines


def render(peers: dict[str, Any] | None, e2e: dict[str, Any] | None,
           bench: dict[str, Any] | None = None, minutes: float | None = None) -> str:
    out: list[str] = []
    if minutes is not None:
        out += [f"`benchmarks/run_cpu.sh` ran for {minutes:.0f} minutes.", ""]
    if peers or e2e:
        out += ["### Against the goals of issue 6", "",
                "A goal is met only when the measured number meets its target.", ""]
        out += goals_table(peers, e2e) + [""]
    if peers:
        method = peers["method"]
        out += ["### Default path vs peer defaults (engine-only, images/s)", "",
                machine_line(peers), "",
                f"Each cell: best of {method['rounds']} interleaved {method['seconds_per_round']:g} s "
                "rounds (median in brackets); input: a random uint8 NHWC batch, the graph's own "
                "input. Precision columns say what really executed. Best peer = the peer with the "
                "higher median; *paired* ratio = median over rounds of visionrt / peer within the "
                "same round (robust to load drifting between rounds); torch ratio on medians.", ""]
        out += peers_table(peers) + [""]
    if e2e:
        out += ["### End to end from JPEG files (images/s)", "", machine_line(e2e), "",
                f"{e2e['images']['count']} {e2e['images']['note']}.", ""]
        out += e2e_table(e2e) + [""]
    if bench:
        config = bench["config"]
        out += ["### `visionrt bench` (Lite0 bundle, every mode)", "", machine_line(bench), "",
                f"`{config['duration']:g}` s measured per row after `{config['warmup']:g}` s "
                "warm-up; server rows: N client threads through the MicroBatcher "
                f"(max batch {config['server_max_batch']}, max wait "
                f"{config['server_max_wait_ms']:g} ms).", ""]
        out += bench_table(bench) + ["", *(f"_{note}_" for note in bench.get("notes", [])), ""]
    return "\n".join(out)


def headline(peers: dict[str, Any]) -> list[str]:
    """The README's table: visionrt's best int8 row per model and batch against every peer."""
    lines = ["| model, batch | PyTorch eager | ONNX Runtime default | OpenVINO default "
             "| **visionrt** int8 | visionrt / best peer (paired) | visionrt / PyTorch |",
             "|---|---|---|---|---|---|---|"]
    for found in (g for g in peers["groups"] if g["precision"] == "int8"):
        rows, peer, torch = _goals.ours(found, "int8"), best_peer(found), found.get("torch")
        if not rows:
            continue
        mine = max(rows, key=lambda r: paired_ratio(r, peer))
        named = {r["name"]: r for r in found["contestants"]}
        mode = " throughput mode" if "throughput" in mine["name"] else ""
        vs_torch = f"{mine['throughput_median'] / torch['throughput_median']:.1f}x" if torch \
            else "–"
        lines.append(f"| {found['model']}, {found['batch_size']} | {_fmt(torch)} "
                     f"| {_fmt(named.get('onnxruntime default'))} "
                     f"| {_fmt(named.get('openvino default'))} | **{_fmt(mine)}**{mode} "
                     f"| {paired_ratio(mine, peer):.2f}x | {vs_torch} |")
    return lines


def int8_gains(peers: dict[str, Any]) -> list[str]:
    """int8 over fp32 at the largest batch, in ONNX Runtime's defaults and in visionrt (strict
    f32), medians of the same run."""
    out = []
    for model in dict.fromkeys(g["model"] for g in peers["groups"]):
        batch = max(g["batch_size"] for g in peers["groups"] if g["model"] == model)
        fp32, int8 = (_goals.group(peers, model, batch, p) for p in ("fp32", "int8"))
        if not (fp32 and int8 and _goals.ours(fp32, "fp32") and _goals.ours(int8, "int8")):
            continue
        median = {name: {r["name"]: r["throughput_median"] for r in g["contestants"]}
                  for name, g in (("fp32", fp32), ("int8", int8))}
        ort = median["int8"]["onnxruntime default"] / median["fp32"]["onnxruntime default"]
        mine = (_goals.ours(int8, "int8")[0]["throughput_median"]
                / _goals.ours(fp32, "fp32")[0]["throughput_median"])
        out.append(f"{model} batch {batch}: {ort:.1f}x in ONNX Runtime (defaults), "
                   f"{mine:.1f}x in visionrt (vs real f32)")
    return out


def summary(peers: dict[str, Any] | None, e2e: dict[str, Any] | None,
            minutes: float | None = None) -> str:
    """The top-level README's benchmark summary (details and goals: benchmarks/README.md)."""
    out: list[str] = []
    if peers:
        out += [machine_line(peers), "",
                f"Images/s, engine-only on a preloaded uint8 batch: best of "
                f"{peers['method']['rounds']} interleaved rounds, median in brackets.", ""]
        out += headline(peers) + [""]
        gains = int8_gains(peers)
        if gains:
            out.append("- int8 vs fp32, same run: " + "; ".join(gains) + ".")
    lite0 = next((g for g in (e2e or {}).get("groups", []) if g["model"] == "lite0"
                  and g["precision"] == "int8"), None)
    if lite0:
        e2e_row = next(r for r in lite0["contestants"] if r["name"] == "visionrt end-to-end")
        plain = lite0["summary"].get("e2e_vs_plain_loop")
        out.append(f"- End to end from JPEG files (read, decode, resize, infer, top-5), Lite0 int8 "
                   f"batch {lite0['batch_size']}: {_fmt(e2e_row)} img/s"
                   + (f", {plain:.2f}x a plain Pillow + torchvision + ONNX Runtime loop."
                      if plain is not None else "."))
    if minutes is not None:
        out.append(f"- `benchmarks/run_cpu.sh` ran for {minutes:.0f} minutes.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=Path)
    parser.add_argument("--e2e", type=Path)
    parser.add_argument("--bench", type=Path, help="JSON of `visionrt bench --json`")
    parser.add_argument("--minutes", type=float, help="how long run_cpu.sh ran")
    parser.add_argument("--write", type=Path, help="README whose results section is replaced")
    parser.add_argument("--summary", type=Path, help="README whose summary section is replaced")
    args = parser.parse_args()
    load = lambda p: json.loads(p.read_text()) if p else None  # noqa: E731
    peers, e2e = load(args.peers), load(args.e2e)
    text = render(peers, e2e, load(args.bench), args.minutes)
    if args.write:
        replace_section(args.write, START, END, text)
    if args.summary:
        replace_section(args.summary, SUMMARY_START, SUMMARY_END, summary(peers, e2e,
                                                                           args.minutes))
    if not (args.write or args.summary):
        print(text)


if __name__ == "__main__":
    main()
