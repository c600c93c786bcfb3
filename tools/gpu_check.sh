#!/usr/bin/env bash
# The GPU check in one call (docs/gpu.md): finds the Python, validates the wheelhouse, refuses without CUDA, installs
# the stack if it does not import yet (offline, from $WHEELHOUSE), runs the GPU tests and the GPU benchmarks, and
# writes everything to one folder:
#   OUTDIR/gpu_check.log     all output
#   OUTDIR/summary.json      device, torch and CUDA versions, mmcv build variant and seconds, each step's seconds
#                            and exit status
#   OUTDIR/pytest_gpu.xml    JUnit XML of `pytest -m gpu`
#   OUTDIR/*.json            the benchmarks' results (bench/gpu_bench.sh)
# Usage: [WHEELHOUSE=DIR] [PYTHON=python] bash tools/gpu_check.sh [OUTDIR]     (default OUTDIR: work_dirs/gpu_check)
#        make gpu-check [GPU_CHECK_DIR=OUTDIR]
# Exit status 0 when every step passed, else 1 (the summary says which failed). Without CUDA it stops after the
# checks that need none (Python, wheelhouse), says so and exits 1, having installed and run nothing.
# Time: GPU_CHECK_BUDGET_S (default 540 s) bounds the whole check; each step runs under `timeout`, at most its own
# limit and never past the budget: GPU_CHECK_INSTALL_S (300; measured on an H200 machine, 16 cores, 2026-11-26: 139 s,
# mmcv's CPU ops 82 s of it), GPU_CHECK_TESTS_S (240; measured: 202 s), GPU_CHECK_BENCH_S (180; bench/gpu_bench.sh's
# limits add up to 175 s). mmcv is built with its CPU ops only (COSUB_MMCV_OPS=cpu: no compiled mmcv op runs in our
# models, docs/gpu.md) and MAX_JOBS = all cores.
# Reruns: GPU_CHECK_STEPS (default "gpu_tests gpu_bench") names the steps after the install to run; on a machine
# where the stack is installed, GPU_CHECK_STEPS=gpu_bench reruns only the benchmarks (the others are skipped).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=${1:-$root/work_dirs/gpu_check}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
log="$out/gpu_check.log"
steps="$out/.steps.tsv"
: > "$log"
: > "$steps"
budget=${GPU_CHECK_BUDGET_S:-540}
run_steps=" ${GPU_CHECK_STEPS:-gpu_tests gpu_bench} "
for name in $run_steps; do
    case $name in
        gpu_tests|gpu_bench) ;;
        *) echo "gpu_check: error: GPU_CHECK_STEPS=${GPU_CHECK_STEPS}: unknown step '$name'; the steps are gpu_tests" \
               "and gpu_bench" | tee -a "$log" >&2; rm -f "$steps"; exit 2 ;;
    esac
done
t0=$(date +%s)
failed=0
PY=""

say() { echo "gpu_check: $*" | tee -a "$log"; }
elapsed() { echo $(( $(date +%s) - t0 )); }

# step NAME LIMIT_S COMMAND...: runs COMMAND under timeout (LIMIT_S, cut to what is left of the budget), output
# to the console and the log; records name, status, seconds and limit; returns the status.
step() {
    local name=$1 limit=$2 left rc start seconds
    shift 2
    left=$(( budget - $(elapsed) - 10 ))  # 10 s kept for the summary
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 0 ]; then
        say "$name: not run, the ${budget} s budget is spent"
        printf '%s\t%s\t%s\t%s\n' "$name" 124 0 0 >> "$steps"
        return 124
    fi
    say "== $name (at most ${limit} s)"
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then say "$name: timed out after ${limit} s"; fi
    say "$name: exit status $rc after ${seconds} s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$limit" >> "$steps"
    return "$rc"
}

skip() {  # skip NAME REASON
    say "$1: skipped ($2)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" skipped 0 0 "$2" >> "$steps"
}

summary() {
    local writer=${PY:-python3}
    "$writer" - "$out" "$steps" "$failed" "$(elapsed)" "${WHEELHOUSE:-}" "$root" <<'EOF' 2>&1 | tee -a "$log"
import json, os, subprocess, sys
out, steps_file, failed, elapsed, wheelhouse, root = sys.argv[1:]
def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
steps = []
with open(steps_file) as f:
    for line in f:
        fields = line.rstrip('\n').split('\t')
        name, status, seconds, limit = fields[:4]
        entry = dict(name=name, seconds=float(seconds), limit_s=int(limit))
        if status == 'skipped':
            entry.update(exit_code=None, status='skipped', reason=fields[4])
        else:
            code = int(status)
            entry.update(exit_code=code, status='passed' if code == 0 else 'timed out' if code in (124, 137)
                         else 'failed')
        steps.append(entry)
try:
    commit = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ''
summary = dict(ok=failed == '0' and all(s['status'] != 'failed' and s['status'] != 'timed out' for s in steps),
               seconds=int(elapsed), commit=commit or None, wheelhouse=wheelhouse or None,
               device=read('device.json'), mmcv=read('mmcv_build.json'), steps=steps)
with open(os.path.join(out, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
print(f'gpu_check: summary in {os.path.join(out, "summary.json")}: ' + ', '.join(
    f'{s["name"]} {s["status"]}' for s in steps) + f'; {"OK" if summary["ok"] else "FAILED"} in {elapsed} s')
EOF
    rm -f "$steps"
}

finish() {  # finish STATUS
    summary
    exit "$1"
}

say "GPU check of $root into $out, budget ${budget} s"
if [ -n "${WHEELHOUSE:-}" ] && [ -d "$WHEELHOUSE" ]; then WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd); fi

# 1. The Python: $PYTHON, else tools/find_python.sh's (active environment, .venv/, python3 with torch).
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; else PY=$(bash "$root/tools/find_python.sh" 2>>"$log"); fi
if [ -z "$PY" ] || ! "$PY" -c "import torch" 2>>"$log"; then
    say "error: no Python with torch found (PYTHON=${PYTHON:-unset}): set PYTHON=/path/to/python of the" \
        "environment with CUDA torch"
    PY=""
    printf '%s\t%s\t%s\t%s\n' python 1 0 0 >> "$steps"
    failed=1
    finish 1
fi
say "python: $PY ($("$PY" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")'))"
printf '%s\t%s\t%s\t%s\n' python 0 0 0 >> "$steps"
export PYTHON="$PY"

# 2. The stack imports already (from /, so that cosub_seg is the installed package)? Else the wheelhouse must be
#    complete and fit this Python; checked before the CUDA check, so a dry run on a CPU machine covers it.
stack_check=$(cd / && "$PY" -c "
import os, sys
import mmcv, mmcv.ops, mmengine, mmseg, cosub_seg
from mmseg.apis import init_model
here = os.path.realpath(sys.argv[1])
print('ok' if os.path.realpath(cosub_seg.__file__).startswith(here + os.sep) else 'elsewhere ' + cosub_seg.__file__)
" "$root" 2>/dev/null || echo missing)
case "$stack_check" in
    ok) say "stack: mmengine, mmcv with ops, mmseg and this checkout's cosub_seg import in $PY" ;;
    elsewhere*) say "stack: imports, but cosub_seg comes from ${stack_check#elsewhere }, not $root" ;;
    *) say "stack: does not import in $PY" ;;
esac
if [ -n "${WHEELHOUSE:-}" ] && [ "$stack_check" = ok ]; then
    # Nothing will be installed: the files are checked, whether they would fit this Python is only reported.
    step wheelhouse 60 bash -c '"$0" "$1/tools/wheelhouse.py" verify "$2" || exit 1
        if msg=$("$0" "$1/tools/wheelhouse.py" check-target "$2" 2>&1); then echo "$msg"; else
        echo "gpu_check: note: ${msg#error: } (no install is needed here: the stack imports already)"; fi' \
        "$PY" "$root" "$WHEELHOUSE" || { failed=1; finish 1; }
elif [ -n "${WHEELHOUSE:-}" ]; then
    step wheelhouse 60 bash "$root/tools/install_offline.sh" --check-only "$WHEELHOUSE" "$PY" || { failed=1; finish 1; }
elif [ "$stack_check" != ok ]; then
    say "error: the stack does not import in $PY and WHEELHOUSE is not set: carry a wheelhouse" \
        "(tools/make_wheelhouse.sh) and set WHEELHOUSE=DIR, or run \`make install\` where the network is"
    printf '%s\t%s\t%s\t%s\n' wheelhouse 1 0 0 >> "$steps"
    failed=1
    finish 1
else
    skip wheelhouse "WHEELHOUSE not set; the stack imports"
fi

# 3. CUDA: the first CUDA call. device.json: what the summary reports of the machine.
step cuda 60 "$PY" - "$out/device.json" <<'EOF'
import json, os, sys
import torch
info = dict(torch=torch.__version__, cuda=torch.version.cuda, cudnn=None, cuda_available=torch.cuda.is_available(),
            cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'))
if info['cuda_available']:
    props = torch.cuda.get_device_properties(0)
    info.update(name=torch.cuda.get_device_name(0), count=torch.cuda.device_count(),
                capability='.'.join(map(str, torch.cuda.get_device_capability(0))),
                memory_gib=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version())
with open(sys.argv[1], 'w') as f:
    json.dump(info, f, indent=2)
if not info['cuda_available']:
    print(f'gpu_check: error: CUDA is not available to {sys.executable} (torch {torch.__version__}, built with CUDA '
          f'{torch.version.cuda}; torch.cuda.is_available() is False, CUDA_VISIBLE_DEVICES='
          f'{info["cuda_visible_devices"] if info["cuda_visible_devices"] is not None else "unset"}): the GPU check '
          'runs the GPU tests and benchmarks and needs a CUDA GPU. Nothing was installed or run.')
    sys.exit(1)
print(f'device: {info["name"]} x{info["count"]} (sm {info["capability"]}, {info["memory_gib"]} GiB), torch '
      f'{torch.__version__}, CUDA {torch.version.cuda}, cuDNN {info["cudnn"]}')
EOF
[ $? = 0 ] || { failed=1; finish 1; }

# 4. Install if needed (offline, mmcv's CPU ops).
if [ "$stack_check" = ok ]; then
    skip install "the stack already imports"
else
    COSUB_MMCV_OPS=${COSUB_MMCV_OPS:-cpu} MAX_JOBS=${MAX_JOBS:-$(nproc)} COSUB_MMCV_REPORT="$out/mmcv_build.json" \
        step install "${GPU_CHECK_INSTALL_S:-300}" bash "$root/tools/install_offline.sh" "$WHEELHOUSE" "$PY" \
        || { failed=1; skip gpu_tests "the install failed"; skip gpu_bench "the install failed"; finish 1; }
fi
if [ ! -f "$out/mmcv_build.json" ]; then
    "$PY" - "$out/mmcv_build.json" <<'EOF' 2>>"$log"
import json, sys
import mmcv
from mmcv.ops import get_compiling_cuda_version
cuda = get_compiling_cuda_version()
with open(sys.argv[1], 'w') as f:
    json.dump(dict(variant='cpu' if cuda == 'not available' else f'cuda{cuda}', ops='cpu' if cuda == 'not available'
                   else 'cuda', built=False, build_seconds=None, source='installed before the check',
                   version=mmcv.__version__), f, indent=2)
EOF
fi

# 5. The GPU tests.
cd "$root" || finish 1
if [[ "$run_steps" != *" gpu_tests "* ]]; then
    skip gpu_tests "not in GPU_CHECK_STEPS=${GPU_CHECK_STEPS:-}"
else
    step gpu_tests "${GPU_CHECK_TESTS_S:-240}" "$PY" -m pytest -m gpu -p no:cacheprovider -q \
        --junitxml="$out/pytest_gpu.xml"
    rc=$?
    if [ "$rc" = 5 ]; then say "gpu_tests: no test marked gpu was collected"; fi
    [ "$rc" = 0 ] || failed=1
fi

# 6. The GPU benchmarks at check sizes: bench/gpu_bench.sh writes their JSON into OUTDIR.
if [[ "$run_steps" != *" gpu_bench "* ]]; then
    skip gpu_bench "not in GPU_CHECK_STEPS=${GPU_CHECK_STEPS:-}"
elif [ -f "$root/bench/gpu_bench.sh" ]; then
    step gpu_bench "${GPU_CHECK_BENCH_S:-180}" bash "$root/bench/gpu_bench.sh" "$out" || failed=1
else
    say "error: bench/gpu_bench.sh is missing: the GPU benchmarks cannot run"
    printf '%s\t%s\t%s\t%s\n' gpu_bench 1 0 0 >> "$steps"
    failed=1
fi

finish "$failed"
