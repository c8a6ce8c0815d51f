#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU and the `gpu` + `tensorrt` extras installed, run every
# gpu-marked test and the GPU benchmark, then print one summary table. Elsewhere, say what is
# missing and exit non-zero.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default: ./gpu-check)
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3),
#              GPU_CHECK_MODEL (default imagenet:tf_efficientnet_lite0),
#              GPU_CHECK_DURATION (seconds per benchmark configuration, default 5).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-$ROOT/gpu-check}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
MODEL="${GPU_CHECK_MODEL:-imagenet:tf_efficientnet_lite0}"
DURATION="${GPU_CHECK_DURATION:-5}"
VISIONRT=("$PYTHON" -c 'import sys; from visionrt.cli import main; sys.argv[0] = "visionrt"; main()')

# --- 1. what is missing? ------------------------------------------------------------------------
missing=()
if ! command -v nvidia-smi >/dev/null 2>&1; then
    missing+=("nvidia-smi not found: no NVIDIA driver on this machine")
elif ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    missing+=("nvidia-smi lists no GPU")
fi
probe="$("$PYTHON" - <<'EOF'
from visionrt import _optional
from visionrt.runtime import _cuda
problems = []
for module, extra in (("tensorrt", "tensorrt"), ("cuda.bindings", "gpu")):
    if not _optional.available(module):
        problems.append(f"python package {module} missing: pip install 'visionrt[{extra}]'")
try:
    import onnxruntime
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        problems.append("onnxruntime has no CUDAExecutionProvider: pip install 'visionrt[gpu]' "
                        "(and uninstall the CPU-only onnxruntime wheel)")
except ImportError:
    problems.append("onnxruntime missing")
reason = _cuda.unavailable_reason(0)
if reason:
    problems.append(f"CUDA: {reason}")
print("\n".join(problems))
EOF
)" || probe="cannot run $PYTHON with visionrt installed (pip install -e '.[train,gpu,tensorrt,dev]')"
while IFS= read -r line; do [[ -n "$line" ]] && missing+=("$line"); done <<<"$probe"
if ((${#missing[@]})); then
    echo "gpu_check: this machine cannot run the GPU checks:" >&2
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    echo "install: pip install -e '.[train,gpu,tensorrt,dev]' on a machine with an NVIDIA GPU" >&2
    exit 2
fi

mkdir -p "$OUT"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv >"$OUT/gpu.csv" 2>&1

# --- 2. every gpu-marked test -------------------------------------------------------------------
echo "== gpu-marked tests"
"$PYTHON" -m pytest -m gpu -rs -q -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" tests \
    2>&1 | tee "$OUT/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}

# --- 3. GPU benchmark: export with engines, then bench TensorRT and ONNX Runtime CUDA ------------
echo "== export $MODEL with TensorRT engines"
bench_rc=0
BUNDLE="$OUT/bundle"
if [[ ! -f "$BUNDLE/manifest.json" ]]; then
    "${VISIONRT[@]}" export "$MODEL" --out "$BUNDLE" --precision fp32,fp16,int8 \
        --engine 2>&1 | tee "$OUT/export.log" || true
    [[ -f "$BUNDLE/manifest.json" ]] || bench_rc=1
fi
if ((bench_rc == 0)); then
    echo "== benchmark"
    "${VISIONRT[@]}" bench "$BUNDLE" --backends tensorrt,onnxruntime \
        --precisions fp32,fp16,int8 --batch-sizes 1,8,32 --duration "$DURATION" \
        --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
    bench_rc=${PIPESTATUS[0]}
fi

# --- 4. one summary table -----------------------------------------------------------------------
"$PYTHON" - "$OUT" "$tests_rc" "$bench_rc" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, tests_rc, bench_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = []
xml = out / "gpu-tests.xml"
if xml.is_file():
    for case in ET.parse(xml).iter("testcase"):
        status = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = tag if tag != "skipped" else "skipped: " + (node.get("message") or "")[:60]
        rows.append(("test", case.get("name", "?"), status))
bench = out / "bench.json"
if bench.is_file():
    for r in json.loads(bench.read_text()).get("results", []):
        lat = r.get("latency_ms", {})
        rows.append(("bench", f"{r.get('backend')} {r.get('precision')} b{r.get('batch_size')} "
                     f"c{r.get('concurrency', 1)}",
                     f"{r.get('throughput', 0):.0f} img/s, p50 {lat.get('p50', 0):.2f} ms, "
                     f"p99 {lat.get('p99', 0):.2f} ms"))
else:
    rows.append(("bench", "GPU benchmark", f"no results (exit {bench_rc}; see {out}/bench.log, "
                 "export.log)"))
gpu = (out / "gpu.csv").read_text().strip().splitlines()[-1] if (out / "gpu.csv").is_file() else "?"
width = max(len(r[1]) for r in rows) if rows else 10
print(f"\nGPU check on {gpu}")
print(f"{'kind':<6} {'what':<{width}}  result")
print(f"{'-' * 6} {'-' * width}  {'-' * 40}")
for kind, what, result in rows:
    print(f"{kind:<6} {what:<{width}}  {result}")
ok = tests_rc == 0 and bench_rc == 0
print(f"\ntests: exit {tests_rc}; benchmark: exit {bench_rc}; overall: {'OK' if ok else 'FAILED'}")
print(f"logs and JSON in {out}")
sys.exit(0 if ok else 1)
EOF
