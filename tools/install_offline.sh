#!/usr/bin/env bash
# Installs this project's stack from a wheelhouse (made by tools/make_wheelhouse.sh where the network is) with no
# index and no network, into the environment of PYTHON: by default $PYTHON, else tools/find_python.sh's choice (the
# active environment, .venv/, or the first python3 with torch). That environment must already have torch,
# torchvision, timm and the packages the wheelhouse expects (its MANIFEST.txt's `# expects:` lines; checked first).
# It installs into that environment itself, e.g. the GPU machine's Python with CUDA torch; docs/gpu.md says how to
# keep it untouched with a venv made with --system-site-packages instead.
#   bash tools/install_offline.sh [--check-only] DIR [PYTHON]        (or: WHEELHOUSE=DIR make install)
# 1. DIR matches DIR/MANIFEST.txt: every file there, same size and sha256 (refuses naming each bad file);
# 2. PYTHON is the Python version DIR was made for and has what DIR expects; a C++ compiler is on PATH;
#    --check-only stops here;
# 3. pip: PYTHON's own, else bootstrapped from the wheelhouse's pip wheel;
# 4. the wheels: pip install --no-index --no-deps (mmengine and mmcv declare opencv-python, which would clash with
#    the target's opencv-python-headless: dependencies are not resolved, the wheelhouse holds the exact set);
# 5. mmcv 2.1.0 built from the wheelhouse's sdist by tools/install_mmcv.sh, CPU ops only unless COSUB_MMCV_OPS=cuda
#    (or auto), with MAX_JOBS (default: all cores);
# 6. this project, pip install --no-deps --no-build-isolation -e . (with the wheelhouse's setuptools);
# 7. the stack imports: cv2, mmengine, mmcv.ops, mmseg.apis, cosub_seg.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
check_only=0
if [ "${1:-}" = --check-only ]; then check_only=1; shift; fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: tools/install_offline.sh [--check-only] WHEELHOUSE_DIR [PYTHON]" >&2
    exit 2
fi
dir=$(cd "$1" 2>/dev/null && pwd) || { echo "error: wheelhouse folder $1 not found" >&2; exit 1; }
if [ -n "${2:-}" ]; then PY=$2; else PY=$(bash "$root/tools/find_python.sh"); fi
if ! "$PY" -c "" 2>/dev/null; then
    echo "error: $PY does not run: give the target's Python as second argument or in \$PYTHON" >&2
    exit 1
fi
wheelhouse() { "$PY" "$root/tools/wheelhouse.py" "$@"; }

echo "== offline install from $dir into $PY"
wheelhouse verify "$dir"
wheelhouse check-target "$dir"
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: $PY cannot import torch: the wheelhouse does not carry torch, torchvision or timm" >&2
    exit 1
fi
if ! command -v "${CXX:-c++}" >/dev/null 2>&1 && ! "$PY" -c "import mmcv._ext" 2>/dev/null; then
    echo "error: no C++ compiler (${CXX:-c++}) on PATH: building mmcv's ops needs one (e.g. apt install g++)" >&2
    exit 1
fi
if [ "$check_only" = 1 ]; then
    echo "wheelhouse $dir can be installed into $PY (checked only, nothing installed)"
    exit 0
fi

if ! "$PY" -m pip --version >/dev/null 2>&1; then
    pip_wheel=$(wheelhouse tool "$dir" pip)
    echo "$PY has no pip: installing $(basename "$pip_wheel") from the wheelhouse"
    "$PY" "$pip_wheel/pip" install -q --no-index --no-deps "$pip_wheel"
fi
pip=("$PY" -m pip install -q --no-index --find-links "$dir" --no-deps --disable-pip-version-check)

mapfile -t wheels < <(wheelhouse install-list "$dir")
echo "== ${#wheels[@]} wheels: $(for w in "${wheels[@]}"; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
"${pip[@]}" "${wheels[@]}"

echo "== mmcv (ops: ${COSUB_MMCV_OPS:-cpu})"
WHEELHOUSE="$dir" COSUB_MMCV_OPS="${COSUB_MMCV_OPS:-cpu}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    bash "$root/tools/install_mmcv.sh" "$PY"

echo "== cosub_seg (editable, from $root)"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$(wheelhouse tool "$dir" setuptools)" "$tools"
PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" "${pip[@]}" --no-build-isolation -e "$root"

# From / so that `import cosub_seg` finds the installed package, not the source folder.
cd /
if ! "$PY" -c "import cv2" 2>/dev/null; then
    echo "error: $PY cannot import cv2: install opencv-python-headless (or opencv-python; not both, they clash)," \
         "which the wheelhouse does not carry" >&2
    exit 1
fi
"$PY" -c "
import cv2, mmcv, mmengine, mmseg, torch, timm
import mmcv.ops
from mmseg.apis import init_model
import cosub_seg
from mmcv.ops import get_compiling_cuda_version
print(f'stack OK: torch {torch.__version__}, timm {timm.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__} (CUDA ops: {get_compiling_cuda_version()}), mmseg {mmseg.__version__}, '
      f'cv2 {cv2.__version__}, cosub_seg from {cosub_seg.__file__}')"
