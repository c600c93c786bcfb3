#!/usr/bin/env bash
# Pretraining under slurm (GPUS, GPUS_PER_NODE, SRUN_ARGS: see tools/slurm_launch.sh).
#   GPUS=32 GPUS_PER_NODE=8 bash tools/slurm_pretrain.sh PARTITION JOB_NAME CONFIG [tools/pretrain.py options...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: tools/slurm_pretrain.sh PARTITION JOB_NAME CONFIG [options]" >&2; exit 2; }
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" tools/pretrain.py "${@:3}"
