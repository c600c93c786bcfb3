#!/usr/bin/env bash
# Distributed evaluation with torchrun (multi-node variables: see tools/dist_launch.sh).
#   bash tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [tools/test_seg.py options, e.g. --tta]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: tools/dist_test_seg.sh CONFIG CHECKPOINT NPROC [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/dist_launch.sh" "$3" tools/test_seg.py "$1" "$2" "${@:4}"
