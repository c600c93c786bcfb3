#!/usr/bin/env bash
# Distributed pretraining with torchrun (multi-node variables: see tools/dist_launch.sh).
#   bash tools/dist_pretrain.sh CONFIG NPROC [tools/pretrain.py options...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/dist_pretrain.sh CONFIG NPROC [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/dist_launch.sh" "$2" tools/pretrain.py "$1" "${@:3}"
