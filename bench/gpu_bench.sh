#!/usr/bin/env bash
# The GPU benchmarks of issue 12 at check sizes (about 3 minutes on one H200, each under its own time limit),
# writing OUTDIR/<benchmark>.json and OUTDIR/<benchmark>.log. tools/gpu_check.sh calls it; full-size runs are
# the scripts' defaults (bench/results/*.json, see docs/benchmarks.md).
#   bash bench/gpu_bench.sh OUTDIR
# Exits non-zero without a CUDA device, and when any benchmark failed or ran out of time (the others still run).
# PYTHON picks the interpreter (default: what tools/find_python.sh finds).
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: bench/gpu_bench.sh OUTDIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "bench/gpu_bench.sh: cannot create $1" >&2; exit 2; }
cd "$(dirname "$0")/.."
python=$(bash tools/find_python.sh) || exit 1
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "bench/gpu_bench.sh: no CUDA device (torch.cuda.is_available() is False for $python): the GPU benchmarks" \
        "need one; nothing was run" >&2
    exit 1
fi

failed=()
# The limits add up to 175 s, within the 180 s tools/gpu_check.sh gives this script (GPU_CHECK_BENCH_S). Measured on
# an H200 machine (2026-11-26, bench/results/gpu/2026-11-26_h200/): 46, 32, 17 and about 30 s.
# bench NAME LIMIT_S SCRIPT [ARGS...]: runs one benchmark with a time limit, its JSON into OUTDIR/NAME.json.
bench() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$python" "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1
    local status=$?
    tail -n 25 "$out/$name.log"
    if [ $status -eq 0 ] && [ -s "$out/$name.json" ]; then
        echo "== $name: done in $((SECONDS - start)) s"
        return
    fi
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        echo "== $name: ran out of its ${limit} s, see $out/$name.log"
    else
        echo "== $name: FAILED (status $status), see $out/$name.log"
    fi
    failed+=("$name")
}

# cosub step, bf16, batch 64, p = 0.45: DeiT III-B (the MFU target) and -L (the speed targets) eager; DeiT III-S with
# 'fixed' sampling compiled too (compiling Bernoulli draws, which break the graph per branch, takes minutes).
bench cosub_step_base_large 60 bench/cosub_step.py --models deit3_base_patch16_224 deit3_large_patch16_224 \
    --batch 64 --rates 0.45 --amp --repeats 3 --variants plain reference ours ours_fixed
# our UperNet ViT-B step against mmseg's own, fp32 and AMP (fp16 with loss scaling), batch 2 at 512x512.
bench seg_vs_mmseg 45 bench/seg_vs_mmseg.py --repeats 5
# batched slide inference against mmseg's at ADE20k's test size (2 windows), fp32.
bench slide_inference 25 bench/slide_inference.py --sizes 512x683 --repeats 3
# the data pipelines' images per second per CPU worker (1 worker and all cores).
# (30 s was too short there: its table and JSON were written, then the limit stopped the process.)
bench data_loading 45 bench/data_loading.py --workers 1 "$(nproc)" --batches 3 24 --images 512 64
# torch.compile of the cosub step: minutes of compiling, so only with GPU_BENCH_COMPILED=1 (and a larger
# GPU_CHECK_BENCH_S), not in the check's budget.
if [ "${GPU_BENCH_COMPILED:-0}" = 1 ]; then
    bench cosub_step_small_compiled 240 bench/cosub_step.py --models deit3_small_patch16_224 --batch 64 \
        --rates 0.45 --amp --repeats 5 --variants plain reference ours ours_fixed ours_fixed_compiled
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "bench/gpu_bench.sh: ${#failed[@]} benchmark(s) failed: ${failed[*]} (logs in $out)" >&2
    exit 1
fi
echo "bench/gpu_bench.sh: all benchmarks done; JSON and logs in $out"
