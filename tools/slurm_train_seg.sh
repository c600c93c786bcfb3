#!/usr/bin/env bash
# Segmentation fine-tuning under slurm: one task per GPU across as many nodes as GPUS asks for.
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_train_seg.sh PARTITION JOB_NAME CONFIG [tools/train_seg.py options...]
# SRUN_ARGS passes extra srun options (e.g. "--time=72:00:00"). Each task reads its rank from slurm's variables.
set -euo pipefail
PARTITION=${1:?usage: tools/slurm_train_seg.sh PARTITION JOB_NAME CONFIG [options]}
JOB_NAME=${2:?usage: tools/slurm_train_seg.sh PARTITION JOB_NAME CONFIG [options]}
CONFIG=${3:?usage: tools/slurm_train_seg.sh PARTITION JOB_NAME CONFIG [options]}
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-10}
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    python -u tools/train_seg.py "$CONFIG" --launcher slurm "$@"
