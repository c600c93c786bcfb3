#!/usr/bin/env bash
# Segmentation evaluation under slurm (GPUS, GPUS_PER_NODE, SRUN_ARGS: see tools/slurm_launch.sh).
#   GPUS=8 bash tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test_seg.py options...]
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: tools/slurm_test_seg.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" tools/test_seg.py "${@:3}"
