#!/usr/bin/env bash
# Distributed fine-tuning with torchrun (multi-node variables: see tools/dist_launch.sh).
#   bash tools/dist_finetune.sh CONFIG NPROC --checkpoint PATH [tools/finetune.py options...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/dist_finetune.sh CONFIG NPROC --checkpoint PATH [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/dist_launch.sh" "$2" tools/finetune.py "$1" "${@:3}"
