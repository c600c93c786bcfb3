#!/usr/bin/env bash
# Installs mmcv 2.1.0 with its compiled ops into the Python environment given as $1.
#
# Why this script exists: PyPI has no binary mmcv 2.x wheel, so pip builds it from the sdist, and mmcv 2.1.0's
# setup.py hard-codes -std=c++17 while torch >= 2.14's headers need C++20. We take the unmodified sdist, change
# its C++ standard to C++20 (nothing else), build a wheel once and keep it in a wheel cache keyed by the torch
# version and the CPU/CUDA variant, so later set-ups on the same machine install it in seconds.
#
# Environment:
#   COSUB_MMCV_OPS=auto|cpu|cuda  which ops to compile. auto (default): mmcv's own rule, CUDA ops when torch sees a
#                      GPU or FORCE_CUDA=1. cpu: CPU ops only, even on a CUDA machine (the GPU is hidden from the
#                      build: CUDA_VISIBLE_DEVICES= FORCE_CUDA=0); enough for this project's models, which call no
#                      compiled mmcv op (docs/gpu.md). cuda: FORCE_CUDA=1 (needs nvcc matching torch's CUDA).
#   FORCE_CUDA=1       as COSUB_MMCV_OPS=cuda (mmcv's own switch).
#   WHEELHOUSE=DIR     offline: the sdist and setuptools < 81 (mmcv's setup.py imports pkg_resources) come from DIR
#                      (tools/make_wheelhouse.sh), mmcv's dependencies must already be installed, nothing is
#                      downloaded. tools/install_offline.sh sets it.
#   COSUB_WHEEL_CACHE  moves the wheel cache (default: ${XDG_CACHE_HOME:-~/.cache}/cosub_seg/wheels)
#   MAX_JOBS           build parallelism (default: 2); CFLAGS (default: -O1 -g0: ~11 instead of ~26 min on 2 cores)
#   COSUB_MMCV_REPORT=FILE  writes what was done as JSON: variant, built or not, build seconds, wheel
set -euo pipefail

PY=${1:?usage: tools/install_mmcv.sh PATH/TO/python}
MMCV_VERSION=2.1.0
root="$(cd "$(dirname "$0")/.." && pwd)"
# The environment's own bin/ (ninja, the compiler wrappers of pip packages) even when it is not activated: without
# ninja on PATH torch builds the ops one file at a time, whatever MAX_JOBS says.
case "$PY" in */*) PATH="$(dirname "$PY"):$PATH" ;; esac

ops=${COSUB_MMCV_OPS:-auto}
if [ "$ops" = auto ] && [ "${FORCE_CUDA:-}" = 1 ]; then ops=cuda; fi
case "$ops" in
    auto) ;;
    cpu) export CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0 ;;
    cuda) export FORCE_CUDA=1 ;;
    *) echo "error: COSUB_MMCV_OPS=$ops: expected auto, cpu or cuda" >&2; exit 2 ;;
esac

report() {  # report BUILT SECONDS WHEEL SOURCE
    if [ -n "${COSUB_MMCV_REPORT:-}" ]; then
        "$PY" - "$COSUB_MMCV_REPORT" "$variant" "$ops" "$1" "$2" "$3" "$4" "${MAX_JOBS:-2}" <<'EOF'
import json, sys
path, variant, ops, built, seconds, wheel, source, jobs = sys.argv[1:]
with open(path, 'w') as f:
    json.dump(dict(variant=variant, ops=ops, built=built == '1', build_seconds=float(seconds) if seconds else None,
                   wheel=wheel or None, source=source, max_jobs=int(jobs)), f, indent=2)
EOF
    fi
}

variant=$("$PY" -c "
import os, torch
cuda = os.environ.get('FORCE_CUDA') == '1' or torch.cuda.is_available()
print(f'torch{torch.__version__.split(\"+\")[0]}-' + ('cuda' + (torch.version.cuda or 'unknown') if cuda else 'cpu'))
")

# Installed already? A CUDA request needs mmcv built with CUDA; a CPU or auto request takes either.
if "$PY" -c "
import sys, mmcv, mmcv._ext
from mmcv.ops import get_compiling_cuda_version
sys.exit(mmcv.__version__ != '$MMCV_VERSION' or ('$ops' == 'cuda' and get_compiling_cuda_version() == 'not available'))
" 2>/dev/null; then
    echo "mmcv $MMCV_VERSION with compiled ops is already installed"
    report 0 "" "" installed
    exit 0
fi

# The wheel's Python tag too: one cache serves every Python of the machine.
pytag=$("$PY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
cache="${COSUB_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cosub_seg/wheels}/$variant"
mkdir -p "$cache"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
pip_offline=()
if [ -n "${WHEELHOUSE:-}" ]; then
    pip_offline=(--no-index)
    # The builds use the wheelhouse's setuptools (< 81, with pkg_resources), whatever this environment has; it is
    # unpacked for the build and not installed.
    setuptools_wheel=$("$PY" "$root/tools/wheelhouse.py" tool "$WHEELHOUSE" setuptools)
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
        "$setuptools_wheel" "$build/setuptools"
    export PYTHONPATH="$build/setuptools${PYTHONPATH:+:$PYTHONPATH}"
fi

source=cache
seconds=""
wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-"$pytag"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    if [ -n "${WHEELHOUSE:-}" ]; then
        source=wheelhouse
        sdist="$WHEELHOUSE/mmcv-$MMCV_VERSION.tar.gz"
        if [ ! -f "$sdist" ]; then
            echo "error: $sdist not found: the wheelhouse lacks the mmcv sdist (tools/make_wheelhouse.sh adds it)" >&2
            exit 1
        fi
        for tool in ninja psutil wheel; do
            "$PY" -c "import $tool" 2>/dev/null || echo "note: $PY has no $tool (the build may be slower or fail)"
        done
    else
        source=pypi
        "$PY" -m pip install -q "setuptools<81" wheel ninja psutil
        "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$build"
        sdist="$build/mmcv-$MMCV_VERSION.tar.gz"
    fi
    compiler=${CXX:-c++}
    if ! command -v "$compiler" >/dev/null 2>&1; then
        echo "error: no C++ compiler ($compiler) on PATH: building mmcv's ops needs one (e.g. apt install g++)" >&2
        exit 1
    fi
    jobs=${MAX_JOBS:-2}
    echo "Building mmcv $MMCV_VERSION ($variant, ops: $ops) from $sdist with MAX_JOBS=$jobs: about 11 minutes on" \
         "2 CPU cores for the CPU ops, once per machine."
    start=$(date +%s.%N)
    tar -xzf "$sdist" -C "$build"
    src="$build/mmcv-$MMCV_VERSION"
    n=$(grep -c -- '-std=c++17' "$src/setup.py" || true)
    if [ "$n" -lt 2 ]; then
        echo "error: expected the -std=c++17 flags in mmcv $MMCV_VERSION's setup.py, found $n; the sdist has changed" >&2
        exit 1
    fi
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    CFLAGS="${CFLAGS:--O1 -g0}" MAX_JOBS="$jobs" MMCV_WITH_OPS=1 \
        "$PY" -m pip wheel "${pip_offline[@]}" --no-build-isolation --no-deps -w "$build/dist" "$src"
    seconds=$("$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$start")
    echo "Built mmcv $MMCV_VERSION ($variant) in $seconds s"
    mv "$build"/dist/mmcv-"$MMCV_VERSION"-*.whl "$cache"/
    wheel=$(ls "$cache"/mmcv-"$MMCV_VERSION"-"$pytag"-*.whl | head -n 1)
fi
echo "Installing $wheel"
# What is installed is unfit (another version, no ops, CPU ops where CUDA ones were asked for), and pip would keep
# an installed mmcv of the same version.
if "$PY" -m pip show -q mmcv >/dev/null 2>&1; then "$PY" -m pip uninstall -q -y mmcv; fi
if [ -n "${WHEELHOUSE:-}" ]; then
    # Offline: mmcv's dependencies came from the wheelhouse (tools/install_offline.sh) and cv2 from the target's
    # opencv-python-headless; mmcv's declared opencv-python is not installed (it would clash with -headless).
    "$PY" -m pip install -q --no-index --no-deps "$wheel"
else
    "$PY" -m pip install -q "$wheel"
fi
"$PY" -c "
import mmcv, mmcv.ops
from mmcv.ops import get_compiling_cuda_version
print('mmcv', mmcv.__version__, 'ops OK, CUDA ops:', get_compiling_cuda_version())"
report "$([ -n "$seconds" ] && echo 1 || echo 0)" "$seconds" "$wheel" "$source"
