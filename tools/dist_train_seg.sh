#!/usr/bin/env bash
# Distributed segmentation fine-tuning with torchrun (multi-node variables: see tools/dist_launch.sh).
#   bash tools/dist_train_seg.sh CONFIG NPROC [tools/train_seg.py options...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/dist_train_seg.sh CONFIG NPROC [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/dist_launch.sh" "$2" tools/train_seg.py "$1" "${@:3}"
