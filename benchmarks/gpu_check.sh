#!/usr/bin/env bash
# GPU check: run the GPU path end to end and print one summary table.
#
#   benchmarks/gpu_check.sh [--rehearse | --no-tensorrt] [OUT_DIR]     (default OUT_DIR: ./gpu-check)
#
#   (full)         a GPU host with the gpu + tensorrt extras: generated calibration images, a short
#                  training run, `visionrt export MODEL --engine --precision fp32,fp16,int8 --calib
#                  --triton`, every gpu-marked test, the GPU benchmark (TensorRT, and ONNX Runtime's
#                  CUDA provider when installed).
#   --rehearse     the same steps on a CPU against the TensorRT/CUDA double (tests/gpu_double);
#                  CI runs it so this script cannot rot. Needs the train + dev extras.
#   --no-tensorrt  a GPU host without TensorRT (cuda-python, cupy, torch with CUDA): the CUDA layer
#                  end to end with the double TensorRT enqueueing a cupy kernel on visionrt's stream,
#                  a short GPU training run, and the torch CUDA baseline rows of `visionrt bench`.
#
# Exit status: 0 when every step passed; 1 when a step failed or a test was skipped for a reason
# other than "not on this machine"; 2 when this machine cannot run the mode at all. A full or
# --no-tensorrt run that passes is recorded in visionrt/data/gpu_check.json and README.md
# (benchmarks/gpu_status.py); commit them.
#
# Environment: PYTHON (default .venv/bin/python if present, else python3),
#              GPU_CHECK_MODEL (full mode, default imagenet:tf_efficientnet_lite0),
#              GPU_CHECK_DURATION (seconds per benchmark configuration, default 5; 0.5 rehearsing).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE=full
case "${1:-}" in
    --rehearse) MODE=rehearse; shift ;;
    --no-tensorrt) MODE=no-tensorrt; shift ;;
    -*) echo "gpu_check: unknown option $1 (use --rehearse or --no-tensorrt)" >&2; exit 2 ;;
esac
OUT="$(mkdir -p "${1:-$ROOT/gpu-check}" && cd "${1:-$ROOT/gpu-check}" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
DOUBLE="$ROOT/tests/gpu_double"
case "$MODE" in  # the double only where the mode asks for it; the repo's code always first
    rehearse) export PYTHONPATH="$ROOT:$ROOT/tests:$DOUBLE/cuda_site:$DOUBLE/site" ;;
    no-tensorrt) export PYTHONPATH="$ROOT:$ROOT/tests:$DOUBLE/site" ;;
    full) export PYTHONPATH="$ROOT:$ROOT/tests" ;;
esac
export VISIONRT_GPU_DOUBLE="${VISIONRT_GPU_DOUBLE:-{\}}"
export VISIONRT_CACHE_DIR="$OUT/cache"
VISIONRT=("$PYTHON" -m visionrt)
HELPER=("$PYTHON" "$ROOT/benchmarks/_gpu_check.py")
if [[ "$MODE" == rehearse ]]; then DURATION="${GPU_CHECK_DURATION:-0.5}"; else DURATION="${GPU_CHECK_DURATION:-5}"; fi

# --- 0. can this machine run the mode? --------------------------------------------------------------
missing="$("${HELPER[@]}" preflight "$MODE" 2>&1)" || missing="cannot run $PYTHON with visionrt (pip install -e '.[train,gpu,tensorrt,dev]'): $missing"
if [[ -n "$missing" ]]; then
    echo "gpu_check ($MODE): this machine cannot run it:" >&2
    while IFS= read -r line; do echo "  - $line" >&2; done <<<"$missing"
    exit 2
fi
rm -f "$OUT"/steps.tsv "$OUT"/*tests.xml "$OUT"/bench*.json
"$PYTHON" -c 'from visionrt.runtime import _cuda; d = _cuda.device_info(0); print(f"{d.name} (compute {d.capability}, {d.total_memory >> 30} GiB)")' >"$OUT/gpu.txt" 2>&1
[[ "$MODE" == rehearse ]] && echo "the TensorRT/CUDA test double: $(cat "$OUT/gpu.txt")" >"$OUT/gpu.txt"

step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, record ok/failed
    local name="$1"; shift
    echo "== $name"
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if ((rc == 0)); then printf '%s\tok\n' "$name" >>"$OUT/steps.tsv"
    else printf '%s\tfailed (exit %s; see %s.log)\n' "$name" "$rc" "$name" >>"$OUT/steps.tsv"; fi
    return "$rc"
}
not_here() {  # not_here NAME REASON: a step this machine cannot run
    echo "== $1: not on this machine: $2"
    printf '%s\tnot on this machine: %s\n' "$1" "$2" >>"$OUT/steps.tsv"
}

# --- 1. data and a short training run ------------------------------------------------------------
DATA="$OUT/data"
[[ -d "$DATA" ]] || step synth "${VISIONRT[@]}" synth "$DATA" --classes 3 --per-class 24 --size 64
if [[ "$MODE" == no-tensorrt ]]; then
    step train "${HELPER[@]}" train-on-gpu "$DATA" "$OUT/run"
else
    rm -rf "$OUT/run"
    step train "${VISIONRT[@]}" train "$DATA" --out "$OUT/run" --arch mobilenetv3_small_050 \
        --weights none --freeze none --img-size 32 --batch-size 16 --epochs 1
fi

# --- 2. export with engines / the probe bundle ---------------------------------------------------
rm -rf "$OUT/bundle" "$OUT/triton"
if [[ "$MODE" == no-tensorrt ]]; then
    step probe_bundle "${HELPER[@]}" probe-bundle "$OUT/bundle"
else
    MODEL="$OUT/run"
    [[ "$MODE" == full ]] && MODEL="${GPU_CHECK_MODEL:-imagenet:tf_efficientnet_lite0}"
    # --allow-mismatch: the summary judges each engine against ONNX Runtime on its own graph
    step export "${VISIONRT[@]}" export "$MODEL" --out "$OUT/bundle" --engine \
        --precision fp32,fp16,int8 --calib "$DATA" --triton "$OUT/triton" --max-batch 32 \
        --calib-samples 32 --verify-samples 32 --allow-mismatch
fi

# --- 3. gpu-marked tests -------------------------------------------------------------------------
TESTS=(tests)
[[ "$MODE" == no-tensorrt ]] && TESTS=(tests/runtime/test_cuda_gpu.py)
step gpu_tests "$PYTHON" -m pytest -m gpu -rs -q -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" "${TESTS[@]}"

# --- 4. benchmark --------------------------------------------------------------------------------
BENCH=(bench "$OUT/bundle" --duration "$DURATION" --warmup "$(awk "BEGIN{print $DURATION/5}")")
if [[ -f "$OUT/bundle/manifest.json" ]]; then
    if [[ "$MODE" == no-tensorrt ]]; then
        step bench "${VISIONRT[@]}" "${BENCH[@]}" --backends tensorrt --precisions fp32 \
            --batch-sizes 1,8,32 --baseline torch --device cuda --json "$OUT/bench.json"
    else
        step bench_tensorrt "${VISIONRT[@]}" "${BENCH[@]}" --backends tensorrt \
            --precisions fp32,fp16,int8 --batch-sizes 1,8,32 --concurrency 8 \
            --json "$OUT/bench-tensorrt.json"
        ort_reason="$("$PYTHON" -c 'from visionrt.runtime.base import backend_unavailable_reason as r; print(r("onnxruntime", "cuda:0") or "")')"
        if [[ -z "$ort_reason" ]]; then
            step bench_onnxruntime "${VISIONRT[@]}" "${BENCH[@]}" --backends onnxruntime \
                --device cuda --precisions fp32,fp16 --batch-sizes 1,8,32 \
                --json "$OUT/bench-onnxruntime.json"
        else
            not_here bench_onnxruntime "$ort_reason"
        fi
    fi
else
    printf 'bench\tfailed (no bundle: see the export step)\n' >>"$OUT/steps.tsv"
fi

# --- 5. one summary table; a passed GPU run is recorded ------------------------------------------
"${HELPER[@]}" summary "$MODE" "$OUT"
rc=$?
if ((rc == 0)) && [[ "$MODE" != rehearse ]]; then
    (cd "$ROOT/benchmarks" && "${HELPER[@]}" record "$MODE" "$OUT")
fi
exit "$rc"
