"""Render the JSON of cpu_peers.py / e2e_jpeg.py into the markdown tables of benchmarks/README.md.

    python benchmarks/report.py --peers peers.json --e2e e2e.json [--write benchmarks/README.md]

Without ``--write`` the tables are printed; with it they replace the text between the
``<!-- results:start -->`` and ``<!-- results:end -->`` markers of that file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _contest import paired_ratio  # noqa: E402 - the scripts share one directory

START, END = "<!-- results:start -->", "<!-- results:end -->"
ROOFLINE_RESNET50_INT8 = 260.0  # img/s on the 2-core reference machine (issue 6)


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
           bench: dict[str, Any] | None = None) -> str:
    out: list[str] = []
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=Path)
    parser.add_argument("--e2e", type=Path)
    parser.add_argument("--bench", type=Path, help="JSON of `visionrt bench --json`")
    parser.add_argument("--write", type=Path, help="README whose marked section is replaced")
    args = parser.parse_args()
    load = lambda p: json.loads(p.read_text()) if p else None  # noqa: E731
    text = render(load(args.peers), load(args.e2e), load(args.bench))
    if not args.write:
        print(text)
        return
    readme = args.write.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"{args.write} has no {START} ... {END} section")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    args.write.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"updated {args.write}")


if __name__ == "__main__":
    main()
