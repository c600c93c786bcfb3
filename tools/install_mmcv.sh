#!/usr/bin/env bash
# Installs mmcv 2.1.0 with its compiled ops into the Python environment given as $1.
#
# Why this script exists: PyPI has no binary mmcv 2.x wheel, so pip builds it from the sdist, and mmcv 2.1.0's
# setup.py hard-codes -std=c++17 while torch >= 2.14's headers need C++20. We download the unmodified sdist, change
# its C++ standard to C++20 (nothing else), build a wheel once and keep it in a wheelhouse keyed by the torch
# version and the CPU/CUDA variant, so later set-ups on the same machine install it in seconds.
#
# Environment: FORCE_CUDA=1 builds the CUDA ops (needs nvcc); COSUB_WHEEL_CACHE moves the wheelhouse
# (default: ${XDG_CACHE_HOME:-~/.cache}/cosub_seg/wheels); MAX_JOBS sets build parallelism (default: 2).
set -euo pipefail

PY=${1:?usage: tools/install_mmcv.sh PATH/TO/python}
MMCV_VERSION=2.1.0

if "$PY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    echo "mmcv $MMCV_VERSION with compiled ops is already installed"
    exit 0
fi

variant=$("$PY" -c "
import os, torch
cuda = os.environ.get('FORCE_CUDA') == '1' or torch.cuda.is_available()
print(f'torch{torch.__version__.split(\"+\")[0]}-' + ('cuda' + (torch.version.cuda or 'unknown') if cuda else 'cpu'))
")
wheelhouse="${COSUB_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cosub_seg/wheels}/$variant"
mkdir -p "$wheelhouse"

wheel=$(ls "$wheelhouse"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "Building mmcv $MMCV_VERSION ($variant) from source: about 11 minutes on 2 CPU cores, once per machine."
    "$PY" -m pip install -q "setuptools<81" wheel ninja psutil
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$build"
    tar -xzf "$build/mmcv-$MMCV_VERSION.tar.gz" -C "$build"
    src="$build/mmcv-$MMCV_VERSION"
    n=$(grep -c -- '-std=c++17' "$src/setup.py" || true)
    if [ "$n" -lt 2 ]; then
        echo "error: expected the -std=c++17 flags in mmcv $MMCV_VERSION's setup.py, found $n; the sdist has changed" >&2
        exit 1
    fi
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    CFLAGS="${CFLAGS:--O1 -g0}" MAX_JOBS="${MAX_JOBS:-2}" MMCV_WITH_OPS=1 \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$build/dist" "$src"
    mv "$build"/dist/mmcv-"$MMCV_VERSION"-*.whl "$wheelhouse"/
    wheel=$(ls "$wheelhouse"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
fi
echo "Installing $wheel"
"$PY" -m pip install -q "$wheel"
"$PY" -c "import mmcv, mmcv.ops; print('mmcv', mmcv.__version__, 'ops OK')"
