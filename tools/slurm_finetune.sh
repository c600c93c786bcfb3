#!/usr/bin/env bash
# Fine-tuning under slurm (GPUS, GPUS_PER_NODE, SRUN_ARGS: see tools/slurm_launch.sh).
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_finetune.sh PARTITION JOB_NAME CONFIG --checkpoint PATH [options...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: tools/slurm_finetune.sh PARTITION JOB_NAME CONFIG --checkpoint PATH [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" tools/finetune.py "${@:3}"
