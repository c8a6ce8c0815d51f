#!/usr/bin/env bash
# Reproduce every CPU number of README.md and benchmarks/README.md (the results say how long it ran).
#
#   benchmarks/run_cpu.sh [WORK_DIR]      (default /tmp/visionrt-bench; nothing is written in the repo
#                                          except the marked sections of README.md and
#                                          benchmarks/README.md, and the plot)
#
# Numbers from a shared machine move with its load: every script interleaves its contestants in
# rounds and reports best and median; the README records the load average of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/tmp/visionrt-bench}"
PY="${PYTHON:-.venv/bin/python}"
export VISIONRT_BENCH_WORK="$WORK"
mkdir -p "$WORK/results"

# 1. random-weight Lite0 / ResNet50 bundles (fp32 + int8 U8S8) and 64 ImageNet-sized JPEGs
"$PY" benchmarks/make_models.py --work "$WORK"

# 2. visionrt's default path vs ONNX Runtime / OpenVINO defaults vs PyTorch eager
"$PY" benchmarks/cpu_peers.py --work "$WORK" --rounds 6 --seconds 1.0 --json "$WORK/results/peers.json"

# 3. end to end from JPEG files vs engine-only vs a plain Pillow + torchvision + ORT loop
"$PY" benchmarks/e2e_jpeg.py --work "$WORK" --precisions int8,fp32 --rounds 4 --seconds 2 \
    --json "$WORK/results/e2e.json"

# 4. the `visionrt bench` table and plot (every mode, concurrency, torch baseline)
"$PY" -m visionrt bench "$WORK/lite0" --batch-sizes 1,4,16,32 --duration 3 --warmup 1 \
    --concurrency 1,4,16 --images "$WORK/images" --baseline torch \
    --json "$WORK/results/bench_lite0.json" --plot benchmarks/bench_lite0.png

# 5. tables and goals into benchmarks/README.md, the headline summary into README.md
"$PY" benchmarks/report.py --peers "$WORK/results/peers.json" --e2e "$WORK/results/e2e.json" \
    --bench "$WORK/results/bench_lite0.json" --minutes "$((SECONDS / 60))" \
    --write benchmarks/README.md --summary README.md
