#!/usr/bin/env bash
# Downloads into DIR what a machine without network needs to install this project's stack (mmengine, mmsegmentation,
# the mmcv 2.1.0 sdist, ftfy, addict, yapf, ...) beyond torch, torchvision, timm and the packages it is expected to
# have (EXPECTED_ON_TARGET in tools/wheelhouse.py, listed in docs/gpu.md), for the target's Python (default 3.12) on
# manylinux x86_64; writes DIR/MANIFEST.txt (file, name, version, sha256, bytes) and prints the total. Refuses, with
# one line and status 1, when the total exceeds 64 MiB (what can be carried). Needs the network; run it where pip
# works, then carry DIR and install there with `WHEELHOUSE=DIR make install` or tools/install_offline.sh DIR.
#   bash tools/make_wheelhouse.sh DIR [--python-version 3.12] [--glibc 2.35] [--add REQ ...] [--limit-mib 64]
# Python: $PYTHON, else the project's .venv/bin/python, else python3. It needs pip and `packaging`, and torch with
# setuptools < 81: fetching the mmcv sdist runs its setup.py, which imports both (`make install` gives .venv that).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: tools/make_wheelhouse.sh DIR [--python-version 3.12] [--glibc 2.35] [--add REQ ...]" >&2
    exit 2
fi
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$root/tools/wheelhouse.py" make "$@"
